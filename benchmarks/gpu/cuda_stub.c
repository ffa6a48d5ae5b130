/* stub libcuda.so.1 so that libtvm_runtime_cuda.so loads on a machine without a driver (build only) */
#define S(n) int n(void) { return 100; /* CUDA_ERROR_NO_DEVICE */ }
S(cuDeviceGetName) S(cuFuncSetAttribute) S(cuLaunchKernelEx) S(cuModuleGetFunction)
S(cuModuleLoadData) S(cuModuleUnload) S(cuTensorMapEncodeTiled) S(cuInit) S(cuDriverGetVersion)
S(cuDeviceGetCount) S(cuGetProcAddress) S(cuGetProcAddress_v2)
static const char* msg = "stub";
int cuGetErrorName(int e, const char** p) { *p = msg; return 0; }
int cuGetErrorString(int e, const char** p) { *p = msg; return 0; }

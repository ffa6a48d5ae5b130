// irgraph's llama.cpp runner for boards: loads a GGUF file and writes the logits of every
// position as little-endian float32 to stdout, prefill in one batch or token by token.
//
//   gguf_runner MODEL.gguf prefill|decode ID ID ...
//
// Same settings as irgraph's llama-cpp-python session: f32 KV cache, flash attention off,
// one sequence. Output: n_tokens * n_vocab floats (row-major), nothing else on stdout.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char * text, void * data) {
    (void) level; (void) text; (void) data;
}

int main(int argc, char ** argv) {
    if (argc < 4 || (strcmp(argv[2], "prefill") != 0 && strcmp(argv[2], "decode") != 0)) {
        fprintf(stderr, "usage: %s MODEL.gguf prefill|decode ID ...\n", argv[0]);
        return 2;
    }
    const int decode = strcmp(argv[2], "decode") == 0;
    const int n = argc - 3;
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = n < 32 ? 32 : n;
    cp.n_seq_max = 1;
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.no_perf = 1;
    struct llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot make a context\n"); return 1; }
    const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_batch batch = llama_batch_init(n, 0, 1);
    for (int start = 0; start < n; start += decode ? 1 : n) {
        const int len = decode ? 1 : n;
        for (int i = 0; i < len; ++i) {
            batch.token[i] = atoi(argv[3 + start + i]);
            batch.pos[i] = start + i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = 1;
        }
        batch.n_tokens = len;
        if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "llama_decode failed\n"); return 1; }
        for (int i = 0; i < len; ++i) {
            fwrite(llama_get_logits_ith(ctx, i), sizeof(float), (size_t) vocab, stdout);
        }
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}

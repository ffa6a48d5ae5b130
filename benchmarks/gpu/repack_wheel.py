"""Repack a TVM wheel runtime-only: drop libtvm_compiler.so, headers, sources and static libraries.

The device payload must fit the 64 MiB carry limit; the full apache-tvm wheel does not.
usage: python repack_wheel.py SRC.whl DST.whl
"""

import base64
import hashlib
import re
import sys
import zipfile

DROP = re.compile(
    r"^tvm/(lib/libtvm_compiler\.so|3rdparty/|src/|include/|web/|lib64/.*\.a$)"
    r"|^tvm_ffi/(3rdparty/|include/|src/)|\.(cu|h|hpp|cc|cmake)$"
)


def repack(src: str, dst: str) -> int:
    """Copy src to dst without the DROP members, with a RECORD rewritten to match; bytes dropped."""
    record, rows, dropped = None, [], 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, 9) as zout:
        for info in zin.infolist():
            name = info.filename
            if name.endswith(".dist-info/RECORD"):
                record = name
                continue
            if DROP.search(name):
                dropped += info.file_size
                continue
            data = zin.read(name)
            out = zipfile.ZipInfo(name, info.date_time)
            out.external_attr, out.compress_type = info.external_attr, zipfile.ZIP_DEFLATED
            zout.writestr(out, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append(f"{name},sha256={digest},{len(data)}")
        if record is None:
            raise SystemExit(f"{src}: no .dist-info/RECORD")
        zout.writestr(record, "\n".join([*rows, f"{record},,"]) + "\n")
    return dropped


if __name__ == "__main__":
    print(sys.argv[2], "dropped", repack(sys.argv[1], sys.argv[2]) // 2**20, "MiB")

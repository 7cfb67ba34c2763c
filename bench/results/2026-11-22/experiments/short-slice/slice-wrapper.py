#!/usr/bin/env python3
import ctypes, os, struct, sys
slice_ns = int(os.environ.get("SLICE_NS", "100000"))
attr = struct.pack("=IIQiIQQQII", 56, 0, 0, 0, 0, slice_ns, 0, 0, 0, 0)
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(attr, 56)
if libc.syscall(314, 0, buf, 0) != 0:
    sys.exit(f"sched_setattr: errno {ctypes.get_errno()}")
os.execv(sys.argv[1], sys.argv[1:])

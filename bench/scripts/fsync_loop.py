#!/usr/bin/env python3
"""The device alone: a loop of one O_DIRECT write and one fdatasync, and its stalls.

Writes --block-kib at a time, round a preallocated and written-through file of 16 MiB, each
write followed by fdatasync, for --seconds; prints p50/p99/p99.9/max in ms and every
write+fdatasync over --stall-ms with its time since the start. With --delete-mib it first
writes --delete-count files of that size (O_DIRECT, then synced) and unlinks them one a
second from --delete-at seconds into the loop, to show what deleting a file costs the writes
beside it (in a thread of its own, each unlink followed by an fsync of the directory, as the journal
does; with
the `discard` mount option, the deletion's discards go to the device at the
next filesystem commit).

  python3 bench/scripts/fsync_loop.py --dir /var/tmp --seconds 8
  python3 bench/scripts/fsync_loop.py --dir /var/tmp --seconds 7 --stall-ms 5 \
      --delete-mib 64 --delete-count 4 --delete-at 1.5     # four journal segments
"""
import argparse
import mmap
import os
import sys
import threading
import time

LOOP_FILE_BYTES = 16 << 20


def written_file(path, size, block):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    for offset in range(0, size, len(block)):
        os.pwrite(fd, block, offset)
    os.fsync(fd)
    return fd


def delete(doomed, args, start):
    """Deletes the files one a second, each unlink followed by an fsync of the directory (as
    the journal removes a segment), in a thread of its own like the shard's retiring task."""
    for n, path in enumerate(doomed):
        time.sleep(max(0.0, start + args.delete_at + n - time.monotonic()))
        began = time.monotonic()
        os.unlink(path)
        directory = os.open(args.dir, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(directory)
        os.close(directory)
        took = (time.monotonic() - began) * 1000
        print(f"{began - start:8.3f} s  deleted {args.delete_mib} MiB ({took:.1f} ms)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True, help="directory on the filesystem to probe")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--block-kib", type=int, default=64)
    parser.add_argument("--stall-ms", type=float, default=2.0)
    parser.add_argument("--delete-mib", type=int, default=0)
    parser.add_argument("--delete-count", type=int, default=1)
    parser.add_argument("--delete-at", type=float, default=2.0)
    args = parser.parse_args()
    if args.block_kib <= 0 or (args.block_kib * 1024) % 4096 or args.block_kib * 1024 > LOOP_FILE_BYTES:
        sys.exit("--block-kib must be a multiple of 4 and at most 16384")
    block = mmap.mmap(-1, args.block_kib * 1024)  # page-aligned, as O_DIRECT needs
    block.write(b"r" * len(block))
    loop_path = os.path.join(args.dir, f"fsync-loop-{os.getpid()}")
    doomed = [
        os.path.join(args.dir, f"fsync-loop-{os.getpid()}.delete{n}")
        for n in range(args.delete_count if args.delete_mib else 0)
    ]
    fd = written_file(loop_path, LOOP_FILE_BYTES, block)
    try:
        noise = mmap.mmap(-1, len(block))
        for path in doomed:
            noise.seek(0)
            noise.write(os.urandom(len(noise)))
            os.close(written_file(path, args.delete_mib << 20, noise))
        os.sync()
        latencies = []
        offset = 0
        start = time.monotonic()
        deleter = threading.Thread(target=delete, args=(doomed, args, start), daemon=True)
        deleter.start()
        while time.monotonic() - start < args.seconds:
            began = time.monotonic()
            os.pwrite(fd, block, offset)
            os.fdatasync(fd)
            took = (time.monotonic() - began) * 1000
            latencies.append(took)
            if took > args.stall_ms:
                print(f"{began - start:8.3f} s  {took:6.2f} ms")
            offset = (offset + len(block)) % LOOP_FILE_BYTES
        latencies.sort()
        n = len(latencies)
        print(
            f"{n} writes+fdatasyncs: p50 {latencies[n // 2]:.2f} ms, p99 {latencies[n * 99 // 100]:.2f}, "
            f"p99.9 {latencies[n * 999 // 1000]:.2f}, max {latencies[-1]:.2f}; "
            f"{sum(1 for x in latencies if x > 5)} over 5 ms"
        )
    finally:
        os.close(fd)
        os.unlink(loop_path)
        for path in doomed:
            if os.path.exists(path):
                os.unlink(path)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# bench/fsbench.sh DIR — one fixed workload on any mounted directory, for side-by-side runs.
#
# Prints `name value unit` per figure (MB = 10^6 bytes):
#   seq_write_1g       1 GiB of non-zero data in 1 MiB write()s, fsync included
#   seq_read_1g        the same file read back with 1 MiB read()s after dropping caches
#   small_create       FSBENCH_NFILES (2000) x 4 KiB files: open(O_CREAT)+write+close
#   small_stat         stat() of each (caches dropped first)
#   small_read         open+read+close of each (caches dropped first)
#   small_delete       unlink() of each
#   mkdir / rmdir      FSBENCH_NFILES empty directories in one parent
#   randread_4k_Njob   fio psync 4 KiB random reads of a 256 MiB file, FSBENCH_RUNTIME (10) s,
#                      O_DIRECT when DIR takes it (else *_buffered after a cache drop)
# Dropping caches needs root; without it, "cold" figures are warm and drop_caches_ok is 0.
set -euo pipefail

DIR=${1:?usage: fsbench.sh DIR}
[ -d "$DIR" ] || { echo "fsbench: not a directory: $DIR" >&2; exit 1; }
command -v fio >/dev/null || { echo "fsbench: fio is missing (apt-get install fio)" >&2; exit 1; }
RUNTIME=${FSBENCH_RUNTIME:-10}
NFILES=${FSBENCH_NFILES:-2000}
WORK=$(mktemp -d "$DIR/fsbench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; }
if drop_caches; then echo "drop_caches_ok 1 bool"; else echo "drop_caches_ok 0 bool"; fi

python3 - "$WORK" "$NFILES" <<'EOF'
import os, sys, time

work, n = sys.argv[1], int(sys.argv[2])
MIB = 1 << 20


def drop():
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError:
        pass


def report(name, count, started, unit):
    print(f"{name} {count / (time.perf_counter() - started):.1f} {unit}", flush=True)


# Sequential: distinct non-zero MiBs, so no layer can skip zeros or deduplicate.
block = bytearray(os.urandom(MIB))
big = os.path.join(work, "big")
t = time.perf_counter()
fd = os.open(big, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for i in range(1024):
    block[:8] = i.to_bytes(8, "little")
    os.write(fd, block)
os.fsync(fd)
os.close(fd)
report("seq_write_1g", 1024 * MIB / 1e6, t, "MB/s")

drop()
t = time.perf_counter()
fd = os.open(big, os.O_RDONLY)
got = 0
while chunk := os.read(fd, MIB):
    got += len(chunk)
os.close(fd)
if got != 1024 * MIB:
    sys.exit(f"read back {got} bytes of {1024 * MIB}")
report("seq_read_1g", got / 1e6, t, "MB/s")
os.unlink(big)

small = os.path.join(work, "small")
os.mkdir(small)
names = [os.path.join(small, f"f{i:05d}") for i in range(n)]
body = os.urandom(4096)
drop()
t = time.perf_counter()
for p in names:
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, body)
    os.close(fd)
report("small_create", n, t, "ops/s")

drop()
t = time.perf_counter()
for p in names:
    if os.stat(p).st_size != 4096:
        sys.exit(f"{p}: wrong size")
report("small_stat", n, t, "ops/s")

drop()
t = time.perf_counter()
for p in names:
    fd = os.open(p, os.O_RDONLY)
    if os.read(fd, 8192) != body:
        sys.exit(f"{p}: wrong content")
    os.close(fd)
report("small_read", n, t, "ops/s")

t = time.perf_counter()
for p in names:
    os.unlink(p)
report("small_delete", n, t, "ops/s")
os.rmdir(small)

dirs = os.path.join(work, "dirs")
os.mkdir(dirs)
dnames = [os.path.join(dirs, f"d{i:05d}") for i in range(n)]
t = time.perf_counter()
for p in dnames:
    os.mkdir(p)
report("mkdir", n, t, "ops/s")
t = time.perf_counter()
for p in dnames:
    os.rmdir(p)
report("rmdir", n, t, "ops/s")
os.rmdir(dirs)

fd = os.open(os.path.join(work, "rr.dat"), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for i in range(256):
    block[:8] = (i + 1_000_000).to_bytes(8, "little")
    os.write(fd, block)
os.fsync(fd)
os.close(fd)
EOF

direct=1 suffix=""
if ! python3 -c 'import os,sys; os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT))' "$WORK/rr.dat" 2>/dev/null; then
  direct=0 suffix="_buffered"
fi
for jobs in 1 4; do
  drop_caches || true
  iops=$(fio --name=rr --filename="$WORK/rr.dat" --size=256m --rw=randread --bs=4k \
    --ioengine=psync --direct=$direct --numjobs=$jobs --time_based --runtime="$RUNTIME" \
    --group_reporting --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["jobs"][0]["read"]["iops"])')
  echo "randread_4k_${jobs}job$([ "$jobs" -gt 1 ] && echo s)$suffix $iops IOPS"
done

#!/usr/bin/env bash
# bench/compare.sh [ROUNDS] — Cairn next to MooseFS and a local directory, on one disk.
#
# Brings up (all on loopback, data under $CMP_BASE, default /tmp/cairn-compare):
#   * MooseFS 3 from Debian's packages: master, three chunk servers, goal 3, one mfsmount;
#   * Cairn: `cairn local` (master + three chunk servers, goal 3) and `cairn mount`;
# then runs bench/fsbench.sh ROUNDS times (default 3) on the local directory, the MooseFS
# mount and the Cairn mount, interleaved so background noise hits all three alike (each
# after the disks have gone quiet), and prints one table of medians with Cairn/MooseFS and
# Cairn/local ratios.
# Everything it started is stopped on exit. Needs root (FUSE mounts, dropping caches).
# Installs moosefs-master, moosefs-chunkserver, moosefs-client, moosefs-cli, fio and
# fuse3 with apt-get when they are missing; builds `cairn` in release mode.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${1:-3}
BASE=${CMP_BASE:-/tmp/cairn-compare}
CAIRN_PORT=${CMP_CAIRN_PORT:-25011} # master; chunk servers on the next three ports
RESULTS=$BASE/results.txt
[ "$(id -u)" = 0 ] || { echo "compare.sh: run as root (FUSE mounts, cache drops)" >&2; exit 1; }

need=()
for bin in mfsmaster:moosefs-master mfschunkserver:moosefs-chunkserver mfsmount:moosefs-client \
  mfscli:moosefs-cli fio:fio fusermount3:fuse3; do
  command -v "${bin%%:*}" >/dev/null || need+=("${bin#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "compare: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "compare: building cairn (release)" >&2
(cd "$ROOT" && cargo build --release -q -p cairn-cli)
CAIRN=${CARGO_TARGET_DIR:-$ROOT/target}/release/cairn

rm -rf "$BASE"
mkdir -p "$BASE/local" "$BASE/cairn-mnt" "$BASE/logs"

# ---------------------------------------------------------------- MooseFS
# MooseFS 3.0 refuses 127.0.0.0/8 for the master's address and for chunk servers'
# advertised addresses. 0.0.0.0 works around both: a connect() to 0.0.0.0 goes over lo
# to 127.0.0.1 on Linux, and REMAP_* makes the master hand out 0.0.0.0 instead of 127.0.0.1.
MFS=$BASE/mfs
MFS_PORT=19419 # metalogger; +1 chunk servers, +2 clients, +2+i chunk server i
mkdir -p "$MFS/etc" "$MFS/master" "$MFS/mnt"
cat > "$MFS/etc/mfsmaster.cfg" <<EOF
WORKING_USER = mfs
WORKING_GROUP = mfs
NICE_LEVEL = 0
DATA_PATH = $MFS/master
EXPORTS_FILENAME = $MFS/etc/mfsexports.cfg
TOPOLOGY_FILENAME = $MFS/etc/mfstopology.cfg
MATOML_LISTEN_HOST = 127.0.0.1
MATOML_LISTEN_PORT = $MFS_PORT
MATOCS_LISTEN_HOST = 127.0.0.1
MATOCS_LISTEN_PORT = $((MFS_PORT + 1))
MATOCL_LISTEN_HOST = 127.0.0.1
MATOCL_LISTEN_PORT = $((MFS_PORT + 2))
REMAP_BITS = 32
REMAP_SOURCE_IP_CLASS = 127.0.0.1
REMAP_DESTINATION_IP_CLASS = 0.0.0.0
EOF
echo "127.0.0.1 / rw,alldirs,admin,maproot=0:0" > "$MFS/etc/mfsexports.cfg"
: > "$MFS/etc/mfstopology.cfg"
cp /var/lib/mfs/metadata.mfs.empty "$MFS/master/metadata.mfs"

CAIRN_PID=""
cleanup() {
  set +e
  for mnt in "$BASE/cairn-mnt" "$MFS/mnt"; do
    mountpoint -q "$mnt" && { umount "$mnt" || umount -l "$mnt"; }
  done
  [ -n "$CAIRN_PID" ] && kill -INT "$CAIRN_PID" && wait "$CAIRN_PID"
  for cfg in "$MFS"/etc/mfschunkserver*.cfg; do
    [ -e "$cfg" ] && timeout 60 mfschunkserver -c "$cfg" stop >/dev/null 2>&1
  done
  [ -e "$MFS/etc/mfsmaster.cfg" ] && timeout 60 mfsmaster -c "$MFS/etc/mfsmaster.cfg" stop >/dev/null 2>&1
  echo "compare: stopped everything; results in $RESULTS" >&2
}
trap cleanup EXIT

until_ok() { # until_ok SECONDS CMD...
  local left=$(($1 * 10)); shift
  until "$@" >/dev/null 2>&1; do
    left=$((left - 1)); [ $left -gt 0 ] || return 1; sleep 0.1
  done
}

chown -R mfs:mfs "$MFS/master"
setsid -f mfsmaster -f -a -c "$MFS/etc/mfsmaster.cfg" start >>"$BASE/logs/mfsmaster.log" 2>&1 </dev/null
until_ok 30 mfscli -H 127.0.0.1 -P $((MFS_PORT + 2)) -SIG || { echo "mfsmaster did not start" >&2; exit 1; }
for i in 1 2 3; do
  d=$MFS/cs$i
  mkdir -p "$d/hdd" "$d/var"
  echo "$d/hdd" > "$MFS/etc/mfshdd$i.cfg"
  cat > "$MFS/etc/mfschunkserver$i.cfg" <<EOF
WORKING_USER = mfs
WORKING_GROUP = mfs
NICE_LEVEL = 0
DATA_PATH = $d/var
HDD_CONF_FILENAME = $MFS/etc/mfshdd$i.cfg
BIND_HOST = 127.0.0.1
MASTER_HOST = 0.0.0.0
MASTER_PORT = $((MFS_PORT + 1))
CSSERV_LISTEN_HOST = 127.0.0.1
CSSERV_LISTEN_PORT = $((MFS_PORT + 2 + i))
EOF
  chown -R mfs:mfs "$d"
  setsid -f mfschunkserver -f -c "$MFS/etc/mfschunkserver$i.cfg" start >>"$BASE/logs/mfscs$i.log" 2>&1 </dev/null
done
mfs_servers() { [ "$(mfscli -H 127.0.0.1 -P $((MFS_PORT + 2)) -SCS -p 2>/dev/null | grep -c "$((MFS_PORT + 3))\\|$((MFS_PORT + 4))\\|$((MFS_PORT + 5))")" -ge 3 ]; }
until_ok 60 mfs_servers || echo "compare: warning: not all MooseFS chunk servers registered yet" >&2
setsid -f mfsmount -f "$MFS/mnt" -H 127.0.0.1 -P $((MFS_PORT + 2)) -o mfsnice=0 >>"$BASE/logs/mfsmount.log" 2>&1 </dev/null
until_ok 30 mountpoint -q "$MFS/mnt" || { echo "mfsmount failed" >&2; exit 1; }
mfssetgoal -r 3 "$MFS/mnt" >/dev/null
mfssettrashtime -r 0 "$MFS/mnt" >/dev/null

# ---------------------------------------------------------------- Cairn
"$CAIRN" local --data "$BASE/cairn-data" --master-port "$CAIRN_PORT" --chunkserver-port $((CAIRN_PORT + 1)) \
  --http-port 0 --chunkserver-http-port 0 >>"$BASE/logs/cairn-local.log" 2>&1 &
CAIRN_PID=$!
sleep 1
kill -0 "$CAIRN_PID" 2>/dev/null || { echo "cairn local exited; see $BASE/logs/cairn-local.log" >&2; exit 1; }
until_ok 30 "$CAIRN" --master 127.0.0.1:$CAIRN_PORT status || { echo "cairn local did not start" >&2; exit 1; }
"$CAIRN" --master 127.0.0.1:$CAIRN_PORT mount "$BASE/cairn-mnt" --log "$BASE/logs/cairn-mount.log"
until_ok 30 mountpoint -q "$BASE/cairn-mnt" || { echo "cairn mount failed" >&2; exit 1; }

# ---------------------------------------------------------------- rounds
# Waits (up to 60 s) until the disks have been quiet for 3 s running: what one side
# leaves running in the background (MooseFS deletes a removed file's chunks after the
# fact; Cairn's servers remove replicas and checkpoint their journals) must not land in
# the next side's timings. Quiet: under 1 MiB read and written per second, all devices.
# printf: awk prints a large sum as 2.3e+09, which shell arithmetic rejects.
disk_sectors() { awk '{ s += $6 + $10 } END { printf "%.0f\n", s }' /proc/diskstats; }
quiet() {
  local prev cur still=0 i
  prev=$(disk_sectors)
  for i in $(seq 1 60); do
    sleep 1
    cur=$(disk_sectors)
    if [ $((cur - prev)) -lt 2048 ]; then still=$((still + 1)); else still=0; fi
    prev=$cur
    [ "$still" -ge 3 ] && return 0
  done
  echo "compare: disks still busy after 60 s; going on" >&2
}

: > "$RESULTS"
for r in $(seq 1 "$ROUNDS"); do
  echo "compare: round $r/$ROUNDS  $(date +%T)  load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  for side in local moosefs cairn; do
    case $side in
      local) dir=$BASE/local ;;
      moosefs) dir=$MFS/mnt ;;
      cairn) dir=$BASE/cairn-mnt ;;
    esac
    quiet
    "$HERE/fsbench.sh" "$dir" | sed "s/^/$side /" >> "$RESULTS"
  done
done

python3 - "$RESULTS" "$ROUNDS" <<'EOF'
import collections, statistics, sys
figures = collections.OrderedDict()
units = {}
for line in open(sys.argv[1]):
    side, name, value, unit = line.split()
    if name == "drop_caches_ok":
        continue
    figures.setdefault(name, collections.defaultdict(list))[side].append(float(value))
    units[name] = unit
def med(xs):
    return statistics.median(xs) if xs else float("nan")
print(f"# {sys.argv[2]} rounds, medians; ratios are Cairn over the other")
print(f"{'figure':24} {'unit':6} {'local':>10} {'MooseFS':>10} {'Cairn':>10} {'C/MooseFS':>10} {'C/local':>8}")
for name, sides in figures.items():
    l, m, c = (med(sides[s]) for s in ("local", "moosefs", "cairn"))
    print(f"{name:24} {units[name]:6} {l:10.1f} {m:10.1f} {c:10.1f} {c / m:10.2f} {c / l:8.2f}")
EOF

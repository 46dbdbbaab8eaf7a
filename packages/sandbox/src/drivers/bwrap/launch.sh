#!/bin/bash
# Starts one bwrap sandbox (see driver.ts). Runs as root, in a mount namespace of its own (the
# driver starts it under `unshare --mount --propagation private`); everything after `setpriv` runs
# as the sandbox's own unprivileged uid with an empty environment.
# Arguments: uid nofile nproc fsize-blocks cgroup.procs-files...
# Environment: CODEBOX_BWRAP; CODEBOX_TMPFS_DIR; CODEBOX_TMPFS, tmpfs mounts as name:bytes:inodes:mode;
# CODEBOX_IMAGE, the image's root; CODEBOX_RUNTIME, the executor tree laid over it (runtime.ts);
# CODEBOX_CODE (optional), a host directory the sandbox sees read-only at /app.
# fd 3 carries the seccomp program and fd 4 bwrap's arguments; every other fd above 2 is closed.
uid=$1; nofile=$2; nproc=$3; fsize=$4; shift 4
for f in "$@"; do echo $$ > "$f" || exit 90; done
for fd in /proc/$$/fd/*; do
  n=${fd##*/}
  case $n in 0|1|2|3|4) ;; *) eval "exec $n>&-" 2>/dev/null ;; esac
done
# The sandbox's tmpfs, capped in size and inodes (bwrap's --tmpfs cannot cap inodes); they exist
# only in this private mount namespace, and bwrap binds them in.
[ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/$PPID/ns/mnt)" ] || exit 92
mnt=$CODEBOX_TMPFS_DIR
mkdir -p "$mnt" && mount -t tmpfs -o size=64k,nr_inodes=24,mode=0711,nosuid,nodev,noexec codebox "$mnt" || exit 92
for spec in $CODEBOX_TMPFS; do
  IFS=: read -r name bytes inodes mode <<<"$spec"
  mkdir "$mnt/$name" || exit 92
  # chown, not uid=: mount options show in the sandbox's mountinfo, and would name the host uid.
  mount -t tmpfs -o "size=$bytes,nr_inodes=$inodes,mode=$mode,nosuid,nodev" codebox "$mnt/$name" || exit 92
  chown "$uid:$uid" "$mnt/$name" || exit 92
done
# The executor's channel directory: its socket is reached by the host through this namespace
# (/proc/<pid>/root), never through a host path the sandbox could see in mountinfo.
mkdir -m 0700 "$mnt/channel" && chown "$uid:$uid" "$mnt/channel" || exit 92
# The egress socket's directory (root's; the sandbox uid may only reach the socket the host puts
# there): bound in as a directory, so a listener a restarted server opens again is seen.
mkdir -m 0711 "$mnt/egress" || exit 92
# The sandbox's / is an overlay of its own (read-only, no upper layer) of the runtime over the
# image: its own inodes, so an inotify watch sees this sandbox's opens only, and relative layer
# paths, so mountinfo shows neither the state dir nor the checkout. Root mounts it, so the sandbox
# uid needs no way into either. The layer binds stay in this namespace only: bwrap's new root
# leaves them behind.
mkdir "$mnt/image" "$mnt/runtime" "$mnt/root" || exit 94
mount --bind "$CODEBOX_IMAGE" "$mnt/image" && mount --bind "$CODEBOX_RUNTIME" "$mnt/runtime" || exit 94
(cd "$mnt" && mount -t overlay -o ro,nosuid,nodev,lowerdir=runtime:image overlay "$mnt/root") || exit 94
# The session's code: a read-only overlay of the host directory (and an empty layer: an overlay
# without an upper layer needs two), mounted with relative layer names, so the sandbox's mountinfo
# shows "overlay" and never the host path; bwrap binds it at /app (the runtime tree's mount point).
# Not noexec: bundled native modules are mmapped executable.
if [ -n "$CODEBOX_CODE" ]; then
  mkdir "$mnt/code" "$mnt/code-empty" "$mnt/app" || exit 95
  mount --bind "$CODEBOX_CODE" "$mnt/code" || exit 95
  (cd "$mnt" && mount -t overlay -o ro,nosuid,nodev,lowerdir=code:code-empty overlay "$mnt/app") || exit 95
fi
ulimit -n "$nofile" -u "$nproc" -c 0 -f "$fsize" || exit 91
bwrap=$(type -P "$CODEBOX_BWRAP") || exit 93
exec -c setpriv --reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all --no-new-privs -- "$bwrap" --args 4 -- /usr/bin/python3 -s -B /opt/codebox/executor/executor.py

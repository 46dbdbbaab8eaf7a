#!/bin/bash
# Starts one bwrap sandbox (see driver.ts). Runs as root; everything after `setpriv` runs as the
# sandbox's own unprivileged uid. Arguments: uid nofile nproc fsize-blocks cgroup.procs-files...
# fd 3 carries the seccomp program and fd 4 bwrap's arguments; every other fd above 2 is closed.
uid=$1; nofile=$2; nproc=$3; fsize=$4; shift 4
for f in "$@"; do echo $$ > "$f" || exit 90; done
for fd in /proc/$$/fd/*; do
  n=${fd##*/}
  case $n in 0|1|2|3|4) ;; *) eval "exec $n>&-" 2>/dev/null ;; esac
done
ulimit -n "$nofile" -u "$nproc" -c 0 -f "$fsize" || exit 91
exec setpriv --reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all --no-new-privs -- "$CODEBOX_BWRAP" --args 4 -- /usr/bin/python3 -s -B /opt/codebox/executor/executor.py

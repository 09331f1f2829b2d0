# bench/lib.sh - what bench/run and bench/instr share (sourced, not run): the run's directory,
# the build, the server's answer taken from the emulator, and the bench nginx servers.
# shellcheck shell=bash

# Sets: root, work (a fresh directory, removed on exit), cpu (the one CPU of every timed run),
# and the environment every client reads.
bench_init() {
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || exit 1
  cd "$root" || exit 1
  work=$(mktemp -d "${TMPDIR:-/tmp}/truedy-bench.XXXXXX") || exit 1
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  cpu=${BENCH_CPU:-$(($(nproc) - 1))}
  export BENCH_BUILD=build/bench
  export LUA_PATH="$root/bench/?.lua;$root/lua/?.lua;;"
  export LUA_CPATH="$root/build/5.4/?.so;$root/$BENCH_BUILD/?.so;;"
  # The bench server checks no key; this one only has the shape of one.
  export BENCH_API_KEY=truedy_benchbenchbenchbenchbenchbench12
}

bench_cleanup() {
  local pidfile
  for pidfile in "$work"/*/nginx.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
  done
  [ -d "$work/emulator" ] && emulator/truedy-emulator stop --dir "$work/emulator" >/dev/null 2>&1
  if [ -n "${BENCH_KEEP:-}" ]; then
    echo "bench: kept $work" >&2
  else
    rm -rf "$work"
  fi
}

bench_die() {
  echo "bench: $*" >&2
  exit 1
}

# The module (Lua 5.4) and the C baselines.
bench_build() {
  make -s all LUA_VERSION=5.4 >&2 || bench_die "the module did not build"
  make -s bench-programs >&2 || bench_die "the baselines did not build"
}

# The emulator's answer to a create, as it sends it: the bench servers answer exactly these
# bytes (the ids and times of one call), so every client decodes the same shape and size.
bench_answer() {
  local env status
  env=$(emulator/truedy-emulator start --dir "$work/emulator" --workers 1 2>"$work/emulator.log") ||
    bench_die "the emulator did not start (it gives the server's answer): $(cat "$work/emulator.log")"
  local url key
  url=$(sed -n 's/^TRUEDY_BASE_URL=//p' <<<"$env")
  key=$(sed -n 's/^TRUEDY_API_KEY=//p' <<<"$env")
  status=$(curl -sS -o "$work/answer.json" -w '%{http_code}' -H @- -H "Content-Type: application/json" \
    --data-binary '{"agent_id":"agt_f9447372","phone_number":"+12125551234"}' "$url/calls" \
    <<<"Authorization: Bearer $key")
  emulator/truedy-emulator stop --dir "$work/emulator" >/dev/null 2>&1
  [ "$status" = 201 ] || bench_die "the emulator answered $status to a create"
  # It goes inside '...' in nginx.conf: none of the characters nginx would read there.
  if grep -q "['\\\$]" "$work/answer.json"; then
    bench_die "the emulator's answer holds a quote, backslash or dollar: cannot serve it from nginx.conf"
  fi
}

# bench_start_nginx NAME TEMPLATE: renders bench/TEMPLATE into $work/NAME and starts it pinned
# to $cpu, on a free port.  Sets: port.
bench_start_nginx() {
  local name=$1 template=$2 dir="$work/$1" conf load="" user="" attempt
  mkdir -p "$dir" || exit 1
  cp "$work/answer.json" "$dir/answer.json"
  if grep -q '@LOAD_MODULES@' "$template" && ! nginx -V 2>&1 | grep -q lua-nginx-module; then
    local modules=${TRUEDY_NGINX_MODULES:-/usr/lib/nginx/modules}
    load="load_module \"$modules/ndk_http_module.so\";
load_module \"$modules/ngx_http_lua_module.so\";"
  fi
  # As root, nginx would run its worker as "nobody", who cannot write into $work.
  [ "$(id -u)" -eq 0 ] && user="user $(id -un) $(id -gn);"
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 20000))
    conf=$(<"$template")
    # Quoted replacements: bash 5.2 would otherwise expand & in them.
    conf=${conf//@DIR@/"$dir"}
    conf=${conf//@PORT@/"$port"}
    conf=${conf//@USER@/"$user"}
    conf=${conf//@LOAD_MODULES@/"$load"}
    conf=${conf//@ANSWER@/"$(<"$work/answer.json")"}
    printf '%s\n' "$conf" >"$dir/nginx.conf"
    if taskset -c "$cpu" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" 2>"$dir/start.log"; then
      for _ in $(seq 50); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
        sleep 0.1
      done
      bench_die "nginx ($name) started but does not answer on port $port"
    fi
    [ "$attempt" -eq 10 ] && bench_die "nginx ($name) did not start: $(cat "$dir/start.log")"
  done
}

# Stops nginx NAME and waits for it to exit: its buffered access log is then complete.
bench_stop_nginx() {
  local pidfile="$work/$1/nginx.pid" pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -QUIT "$pid" 2>/dev/null
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  bench_die "nginx ($1) did not stop"
}

# What the numbers were measured on, for every report.
bench_describe() {
  local model
  model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  printf '%s; commit %s%s; %s CPUs (%s); Lua %s, libcurl %s, %s\n' \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "$(git diff --quiet HEAD -- csrc bench 2>/dev/null || echo ' + uncommitted changes')" \
    "$(nproc)" "${model:-unknown CPU}" \
    "$(lua5.4 -v 2>&1 | awk '{print $2}')" "$(pkg-config --modversion libcurl)" \
    "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
}

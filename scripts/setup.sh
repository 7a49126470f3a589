#!/usr/bin/env bash
# Brings this machine to the state the product needs. Idempotent: a second run takes seconds.
#   scripts/setup.sh main   - Python env, Docker engine, Redis, the local demo image
#   scripts/setup.sh test   - main, plus PostgreSQL, a local registry with htpasswd auth, Chromium
# Quiet on success; on failure it says exactly what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-main}"
VAR="$PWD/var"
mkdir -p "$VAR"
LOG="$VAR/setup.log"
: >"$LOG"

die() { echo "setup: $*" >&2; exit 1; }
quiet() { "$@" >>"$LOG" 2>&1 || { tail -n 30 "$LOG" >&2; die "failed: $*"; }; }

MAIN_PKGS=(docker.io redis-server busybox-static)
TEST_PKGS=(docker-registry apache2-utils postgresql chromium prometheus iproute2 util-linux gcc libc6-dev nodejs npm)
declare -A PKG_BIN=(
  [docker.io]=dockerd [redis-server]=redis-server [busybox-static]=busybox
  [docker-registry]=docker-registry [apache2-utils]=htpasswd [postgresql]=pg_ctlcluster
  [chromium]=chromium [prometheus]=promtool [iproute2]=ip [util-linux]=nsenter [gcc]=gcc
  [libc6-dev]=/usr/include/dlfcn.h [nodejs]=node [npm]=npm
)

install_missing() {
  local missing=()
  for pkg in "$@"; do
    local need=${PKG_BIN[$pkg]}  # a command, or a file the package brings
    if [[ $need == /* ]]; then [ -e "$need" ] || missing+=("$pkg")
    else command -v "$need" >/dev/null 2>&1 || missing+=("$pkg"); fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing ${missing[*]} (commands: $(for p in "${missing[@]}"; do printf '%s ' "${PKG_BIN[$p]}"; done)); install them, or run this as root on Debian"
  fi
  quiet apt-get update -qq
  DEBIAN_FRONTEND=noninteractive quiet apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # wait_for SECONDS COMMAND...
  local limit=$1; shift
  for _ in $(seq 1 $((limit * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  return 1
}

python_env() {
  [ -x .venv/bin/python ] || quiet python3 -m venv .venv
  if [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
    quiet .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
    touch .venv/.installed
  fi
}

docker_engine() {
  if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "the Docker engine is not answering and only root can start dockerd"
    nohup dockerd >"$VAR/dockerd.log" 2>&1 &
    wait_for 60 docker info || { tail -n 20 "$VAR/dockerd.log" >&2; die "dockerd did not start"; }
  fi
}

redis_ping() {  # redis_ping PASSWORD ("" for none)
  if [ -n "$1" ]; then REDISCLI_AUTH="$1" redis-cli -p 6379 ping 2>/dev/null | grep -q PONG
  else redis-cli -p 6379 ping 2>/dev/null | grep -q PONG; fi
}

redis() {
  # The local Redis has a password, made once per machine (per user: ~/.local/state/workflows/
  # redis.password, mode 600) and copied into this checkout's var/redis.password, where the app,
  # the tests and the benchmarks read it. Every checkout on the machine shares the one Redis, so a
  # second clone finds the Redis the first one started and speaks its password. Run containers are
  # kept from it by the egress rules, and nothing without the password gets in anyway. A REDIS_URL
  # you give is used as it is (its Redis is yours to run).
  if [ -n "${REDIS_URL:-}" ]; then return 0; fi
  local home="${HOME:-$(getent passwd "$(id -un)" | cut -d: -f6)}"
  local state="${XDG_STATE_HOME:-$home/.local/state}/workflows"
  local machine="$state/redis.password" pwfile="$VAR/redis.password"
  (umask 077; mkdir -p "$state")
  if [ ! -s "$machine" ]; then  # the first checkout here: its own password, if it had one, stays
    if [ -s "$pwfile" ]; then (umask 077; cp "$pwfile" "$machine")
    else (umask 077; python3 -c "import secrets; print(secrets.token_urlsafe(32))" >"$machine"); fi
  fi
  chmod 600 "$machine"
  (umask 077; cp "$machine" "$pwfile")
  chmod 600 "$pwfile"
  local pw
  pw=$(cat "$machine")
  if redis_ping "$pw"; then return 0; fi
  if redis_ping ""; then  # ours, started before it had a password
    quiet redis-cli -p 6379 config set requirepass "$pw"
    return 0
  fi
  if port_open 6379; then
    die "a Redis on 127.0.0.1:6379 refuses the password in $machine: stop it, or set REDIS_URL"
  fi
  quiet redis-server --daemonize yes --port 6379 --bind 127.0.0.1 --dir "$VAR" \
    --save '' --appendonly no --logfile "$VAR/redis.log" --requirepass "$pw"
  wait_for 20 redis_ping "$pw" || die "redis-server did not start on port 6379"
}

# A tiny image built from Debian's busybox-static: nothing can be pulled from the internet here.
local_image() {
  local ref=$1
  docker image inspect "$ref" >/dev/null 2>&1 && return 0
  local root
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp"
  cp "$(command -v busybox)" "$root/bin/busybox"
  for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
  tar -C "$root" -c . | quiet docker import \
    -c 'CMD ["/bin/sh","-c","echo hello from the image CMD"]' -c 'ENV PATH=/bin' - "$ref"
  rm -rf "$root"
}

postgres() {
  local ver
  ver=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  pg_lsclusters -h | grep -q "^$ver main" || quiet pg_createcluster "$ver" main
  pg_lsclusters -h | grep -q "^$ver main .* online" || quiet pg_ctlcluster "$ver" main start
  wait_for 30 su postgres -c "psql -qAtc 'select 1'" || die "PostgreSQL did not start"
  # pg_stat_statements (in Debian's postgresql package) counts the statements the benchmarks report
  if ! su postgres -c "psql -qAtc 'show shared_preload_libraries'" | grep -q pg_stat_statements; then
    quiet su postgres -c "psql -qc \"alter system set shared_preload_libraries = 'pg_stat_statements'\""
    quiet pg_ctlcluster "$ver" main restart
    wait_for 30 su postgres -c "psql -qAtc 'select 1'" || die "PostgreSQL did not start"
  fi
  su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname='workflows'\"" | grep -q 1 ||
    quiet su postgres -c "psql -qc \"create role workflows login createdb password 'workflows'\""
}

registry() {
  # A private registry on 127.0.0.1:5001 with htpasswd auth (user tester / password tester-pw).
  local dir="$VAR/registry"
  mkdir -p "$dir/data"
  [ -f "$dir/htpasswd" ] || quiet htpasswd -Bbc "$dir/htpasswd" tester tester-pw
  cat >"$dir/config.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5001
auth:
  htpasswd:
    realm: workflows-test
    path: $dir/htpasswd
EOF
  if ! port_open 5001; then
    nohup docker-registry serve "$dir/config.yml" >"$VAR/registry.log" 2>&1 &
    wait_for 20 port_open 5001 || die "docker-registry did not start"
  fi
}

install_missing "${MAIN_PKGS[@]}"
python_env
docker_engine
redis
local_image workflows.local/busybox:1
oidc_provider() {
  # The sign-in tests' OpenID provider (tests/oidc): the npm package oidc-provider, as locked.
  local dir=tests/oidc
  if [ ! -f "$dir/node_modules/.installed" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.installed" ]; then
    quiet npm ci --prefix "$dir" --no-audit --no-fund
    touch "$dir/node_modules/.installed"
  fi
}

if [ "$MODE" = test ]; then
  install_missing "${TEST_PKGS[@]}"
  postgres
  registry
  oidc_provider
fi

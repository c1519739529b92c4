#!/usr/bin/env bash
# The MLflow tracking server for srdc studies; see mlflow_server/README.md.
#
# Defaults: listens on 127.0.0.1:5000, runs in a SQLite database and keeps artifacts in a local folder, both
# under $MLFLOW_HOME (default: this folder), with job execution off. Change them with environment variables
# (mlflow server reads the MLFLOW_* ones itself) or with mlflow-server flags, which win over both:
#   MLFLOW_HOME                    where mlflow.db and mlartifacts/ go (default: this folder)
#   MLFLOW_HOST, MLFLOW_PORT       address to listen on (default 127.0.0.1, 5000; 0.0.0.0 for remote clients)
#   MLFLOW_WORKERS                 server worker processes (default 2)
#   MLFLOW_BACKEND_STORE_URI       e.g. postgresql://mlflow:PASSWORD@db-host:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION   e.g. s3://my-bucket/srdc or gs://my-bucket/srdc
#   MLFLOW_SERVER_ALLOWED_HOSTS    Host headers remote clients use, e.g. mlflow.lab.internal,10.0.0.5:5000
# Example: MLFLOW_PORT=5001 mlflow_server/start.sh --workers 1
#
# A port already taken (another server) is refused in one line, exit 2, before anything starts. Once the server
# listens, one line says so, naming the pid of its own process that holds the port ("mlflow server: ready at URL
# (pid N listens)"): wait for that line, not for /health, which any server on the port would answer.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MLFLOW_HOME="${MLFLOW_HOME:-$here}"  # not exported: MLflow reads MLFLOW_HOME as a source checkout
export MLFLOW_HOST="${MLFLOW_HOST:-127.0.0.1}"
export MLFLOW_PORT="${MLFLOW_PORT:-5000}"
export MLFLOW_WORKERS="${MLFLOW_WORKERS:-2}"
export MLFLOW_BACKEND_STORE_URI="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$MLFLOW_HOME/mlflow.db}"
export MLFLOW_ARTIFACTS_DESTINATION="${MLFLOW_ARTIFACTS_DESTINATION:-$MLFLOW_HOME/mlartifacts}"
# The job-execution backend (Huey workers for GenAI jobs) costs about 2 GB of memory; studies do not use it.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
# MLflow's usage telemetry: its unguarded environment variable raced into a KeyError answered as HTTP 500
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"

# the address the server will listen on: the variables, or the flags, which win
host="$MLFLOW_HOST" port="$MLFLOW_PORT"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --host | -h) host="${args[i + 1]:-$host}" ;;
        --host=*) host="${args[i]#--host=}" ;;
        --port | -p) port="${args[i + 1]:-$port}" ;;
        --port=*) port="${args[i]#--port=}" ;;
    esac
done
# binding as uvicorn will (SO_REUSEADDR) fails only where a socket listens
if ! python3 -c 'import socket, sys
family, kind, _, _, address = socket.getaddrinfo(sys.argv[1], int(sys.argv[2]), type=socket.SOCK_STREAM)[0]
with socket.socket(family, kind) as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    probe.bind(address)' "$host" "$port" 2>/dev/null; then
    echo "error: port $port on $host is already in use (another server listens there); stop it, or start this" \
        "one on a free port: MLFLOW_PORT=$((port + 1)) mlflow_server/start.sh" >&2
    exit 2
fi

# The processes of the server's group (read from /proc: no procps needed in a slim image).
group_members() {
    local stat fields group
    for stat in /proc/[0-9]*/stat; do
        { fields="$(< "$stat")"; } 2>/dev/null || continue  # a process that ended meanwhile
        read -r _ _ group _ <<< "${fields##*) }"  # after the command name: state, ppid, process group
        if [ "$group" = "$server" ]; then
            echo "${stat//[^0-9]/}"
        fi
    done
}

# The pid of a process of the server's group that listens on the port (its socket's inode among its open files).
own_listener() {
    local inode pid hex
    hex="$(printf ':%04X' "$port")"
    for inode in $(awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p {print $10}' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null); do
        for pid in $(group_members); do
            if [ -n "$(find "/proc/$pid/fd" -lname "socket:\[$inode\]" 2>/dev/null | head -n 1)" ]; then
                echo "$pid"
                return 0
            fi
        done
    done
    return 1
}

mkdir -p "$MLFLOW_HOME"
# The server runs in a process group of its own, its uvicorn workers with it. Whenever this script ends (Ctrl-C,
# `kill` of this script's pid, or the server itself dying, even by SIGKILL) it stops that whole group, so that no
# worker is left serving the port.
setsid mlflow server --serve-artifacts "$@" &
server=$!
stop_server() {
    trap - EXIT INT TERM
    kill -TERM -- "-$server" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 -- "-$server" 2>/dev/null || exit "$1"
        sleep 0.1
    done
    kill -KILL -- "-$server" 2>/dev/null || true
    exit "$1"
}
trap 'stop_server 130' INT
trap 'stop_server 143' TERM
trap 'stop_server $?' EXIT
ready=false
while kill -0 "$server" 2>/dev/null; do
    if listener="$(own_listener)"; then
        echo "mlflow server: ready at http://$host:$port (pid $listener listens)"
        ready=true
        break
    fi
    sleep 0.5
done
code=0
wait "$server" || code=$?
if ! $ready; then  # uvicorn ends with status 0 when it cannot bind: never a success here
    echo "error: the mlflow server ended (status $code) before it listened on $host:$port; its output above" \
        "says why" >&2
    code=$((code == 0 ? 1 : code))
fi
exit "$code"

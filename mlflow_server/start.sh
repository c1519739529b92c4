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
wait "$server"

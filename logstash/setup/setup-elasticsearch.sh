#!/bin/sh
# One-shot setup of the logs-interlock-* data streams: lifecycle policy, then index
# template. Idempotent (PUT replaces). Run by the es-setup job of docker-compose.yml;
# by hand: ELASTICSEARCH_URL=http://localhost:9200 sh logstash/setup/setup-elasticsearch.sh
set -eu

ES="${ELASTICSEARCH_URL:-http://elasticsearch:9200}"
HERE="$(cd "$(dirname "$0")" && pwd)"

echo "waiting for $ES"
until curl -fsS "$ES/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null; do
  sleep 2
done

put() {
  echo "PUT $1"
  curl -fsS --retry 5 --retry-all-errors -X PUT "$ES/$1" \
    -H 'Content-Type: application/json' --data-binary "@$2"
  echo
}

put _ilm/policy/interlock-logs "$HERE/ilm-policy.json"
put _index_template/logs-interlock "$HERE/index-template.json"
echo "elasticsearch setup done"

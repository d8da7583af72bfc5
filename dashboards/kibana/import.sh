#!/bin/sh
# Import the interlock saved objects (data view, saved searches, dashboard) into Kibana
# through its saved objects API. Idempotent (overwrite=true). Run by the kibana-setup job
# of docker-compose.yml; by hand:
#   KIBANA_URL=http://localhost:5601 sh dashboards/kibana/import.sh
set -eu

KIBANA="${KIBANA_URL:-http://kibana:5601}"
HERE="$(cd "$(dirname "$0")" && pwd)"

echo "waiting for $KIBANA"
until curl -fsS "$KIBANA/api/status" | grep -q '"level":"available"'; do
  sleep 5
done

echo "importing $HERE/interlock.ndjson"
response="$(curl -fsS --retry 5 --retry-all-errors -X POST \
  "$KIBANA/api/saved_objects/_import?overwrite=true" \
  -H 'kbn-xsrf: true' --form file=@"$HERE/interlock.ndjson")"
echo "$response"
case "$response" in
  *'"success":true'*) echo "kibana setup done" ;;
  *) echo "kibana import failed" >&2; exit 1 ;;
esac

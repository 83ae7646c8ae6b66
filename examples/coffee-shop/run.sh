#!/usr/bin/env bash
# Opens the coffee shop: starts the two demo services (services.lua) and
# Tollgate with gateway.config.yml, waits until all three accept
# connections, prints curl commands to try, and runs until Ctrl-C or
# SIGTERM, which stops every process it started.
#
#   make run                          builds, then runs this script
#   ./examples/coffee-shop/run.sh     from any directory, after `make`
#
# Ports (all on 127.0.0.1): GATEWAY_PORT (8080), GATEWAY_TLS_PORT (8443),
# CUSTOMERS_PORT (8081), ORDERS_PORT (8082).  TOLLGATE_BIN overrides build/tollgate, LUAJIT luajit.
# Output: the gateway's log on stderr, its access log (one JSON line per
# request) on stdout, one line per request from the services on stderr.
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1

export GATEWAY_PORT=${GATEWAY_PORT:-8080}
export GATEWAY_TLS_PORT=${GATEWAY_TLS_PORT:-8443}
customers_port=${CUSTOMERS_PORT:-8081}
orders_port=${ORDERS_PORT:-8082}
# gateway.config.yml reads these (see its serviceEndpoints)
export CUSTOMERS_URL=http://127.0.0.1:$customers_port
export ORDERS_URL=http://127.0.0.1:$orders_port
tollgate=${TOLLGATE_BIN:-$root/build/tollgate}
export TOLLGATE_HOME=${TOLLGATE_HOME:-$root}   # where it finds lua/ and policies/
luajit=${LUAJIT:-luajit}

pids=()

die() {
  echo "coffee-shop: $*" >&2
  exit 1
}

# SIGTERM to everything started, then wait for it (SIGKILL after 15 s).
# shellcheck disable=SC2317  # called from the traps
stop() {
  trap - EXIT INT TERM HUP
  [ ${#pids[@]} -gt 0 ] || return 0
  echo "coffee-shop: stopping (pids ${pids[*]})" >&2
  kill -TERM "${pids[@]}" 2>/dev/null
  local deadline=$((SECONDS + 15)) pid
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "coffee-shop: pid $pid did not stop in time; killing it" >&2
        kill -KILL "$pid" 2>/dev/null
        break
      fi
      sleep 0.1
    done
  done
  wait 2>/dev/null
  echo "coffee-shop: stopped" >&2
}
# On a signal: stop everything, then die of that signal, so that the
# caller (make, a shell) sees an interrupt rather than an error.
# shellcheck disable=SC2317  # called from the traps
on_signal() {
  stop
  trap - "$1"
  kill -s "$1" $$
}
trap stop EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

# True if something accepts connections on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_listening NAME PID PORT: polls until PORT accepts connections;
# fails if PID exits first or after 10 s.
wait_listening() {
  local deadline=$((SECONDS + 10))
  until port_open "$3"; do
    kill -0 "$2" 2>/dev/null || die "the $1 exited before listening on port $3 (its error is above)"
    [ "$SECONDS" -lt "$deadline" ] || die "the $1 did not listen on port $3 within 10 s"
    sleep 0.05
  done
}

[ -x "$tollgate" ] || die "$tollgate not found: run 'make' first (or 'make run')"
command -v "$luajit" >/dev/null || die "$luajit not found: run 'make deps'"
if [ "$(printf '%s\n' "$GATEWAY_PORT" "$GATEWAY_TLS_PORT" "$customers_port" "$orders_port" |
      sort -u | wc -l)" != 4 ]; then
  die "GATEWAY_PORT, GATEWAY_TLS_PORT, CUSTOMERS_PORT and ORDERS_PORT must differ"
fi
for port in "$GATEWAY_PORT" "$GATEWAY_TLS_PORT" "$customers_port" "$orders_port"; do
  if port_open "$port"; then
    die "port $port is busy: something already listens on 127.0.0.1:$port.
Stop it, or choose other ports, e.g.
  GATEWAY_PORT=9080 GATEWAY_TLS_PORT=9443 CUSTOMERS_PORT=9081 ORDERS_PORT=9082 $0"
  fi
done

# setsid: the children get their own session, so a Ctrl-C in this terminal
# reaches only this script, whose trap stops them in order.  (setsid keeps
# the pid: without job control a child is not a process group leader.)
setsid "$luajit" examples/coffee-shop/services.lua \
  --customers-port "$customers_port" --orders-port "$orders_port" </dev/null &
services_pid=$!
pids+=("$services_pid")
setsid "$tollgate" -c examples/coffee-shop/gateway.config.yml </dev/null &
gateway_pid=$!
pids+=("$gateway_pid")

wait_listening "customers service" "$services_pid" "$customers_port"
wait_listening "orders service" "$services_pid" "$orders_port"
wait_listening "gateway" "$gateway_pid" "$GATEWAY_PORT"
wait_listening "gateway (https)" "$gateway_pid" "$GATEWAY_TLS_PORT"

gw=http://127.0.0.1:$GATEWAY_PORT
token=$("$root/examples/coffee-shop/mint-token.sh" coffee-lover) || die "could not mint a token (openssl?)"
cat <<EOF

The coffee shop is open.
  gateway            $gw   and https://127.0.0.1:$GATEWAY_TLS_PORT   (tollgate, pid $gateway_pid)
  customers service  $CUSTOMERS_URL   (services.lua, pid $services_pid)
  orders service     $ORDERS_URL   (services.lua, pid $services_pid)

Each API is rate-limit -> jwt -> proxy. A token, signed with the demo key
(valid for a day; examples/coffee-shop/mint-token.sh makes more):

  TOKEN=$token

Try, from another terminal:
  curl -i -H 'Host: customers.company.com' $gw/customers                      # 401: no token
  curl -H 'Host: customers.company.com' -H "Authorization: Bearer \$TOKEN" $gw/customers
  curl -H 'Host: orders.company.com' -H "Authorization: Bearer \$TOKEN" $gw/orders/1
  curl -H 'Host: orders.company.com' -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -d '{"customerId": 2, "item": "latte"}' $gw/orders
  for i in \$(seq 11); do curl -s -o /dev/null -w '%{http_code} ' \\
       -H 'Host: orders.company.com' -H "Authorization: Bearer \$TOKEN" $gw/orders; done; echo
                                                   # 200 ... then 429: 10 per 10 s per client
  curl -i -H 'Host: coffee.company.com' $gw/customers      # 404: no apiEndpoint for that host
  curl --cacert examples/coffee-shop/keys/demo-tls.pem -H "Authorization: Bearer \$TOKEN" \\
       --resolve customers.company.com:$GATEWAY_TLS_PORT:127.0.0.1 \\
       https://customers.company.com:$GATEWAY_TLS_PORT/customers     # the same over HTTPS

Each answer's "requestId" is the eg-request-id the gateway sent; the access
log line below has it as "id" (and "error" says why a request was refused).
Ctrl-C stops everything.

EOF

# Run until a signal (the traps above), or until a process dies.
wait -n
status=$?
kill -0 "$gateway_pid" 2>/dev/null || die "the gateway exited unexpectedly (status $status)"
die "the services exited unexpectedly (status $status)"

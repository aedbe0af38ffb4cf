#!/usr/bin/python3
"""Connects as each user of definitions.json to a vhost holding the imported definitions and checks that
allowed operations work and forbidden ones are refused with 403 ACCESS_REFUSED. Used by Deploy/check.

    check-permissions.py HOST PORT VHOST

Passwords are the placeholders of definitions.json (change-me-<role>). Prints one line per check; exits 1
if any check fails. Test messages stay in the vhost, which the caller deletes afterwards.
"""
import sys

import pika
from pika.exceptions import ChannelClosedByBroker

host, port, vhost = sys.argv[1], int(sys.argv[2]), sys.argv[3]
failures = 0


def connect(role):
    credentials = pika.PlainCredentials("warren-" + role, "change-me-" + role)
    return pika.BlockingConnection(pika.ConnectionParameters(host, port, vhost, credentials, connection_attempts=1))


def expect(conn, role, what, allowed, op):
    """Runs op(channel) on a fresh confirm channel; allowed: True (must work) or False (must be 403)."""
    global failures
    ch = conn.channel()
    ch.confirm_delivery()
    try:
        op(ch)
        outcome = "allowed"
    except ChannelClosedByBroker as e:
        outcome = "refused %d" % e.reply_code if e.reply_code == 403 else "error %d %s" % (e.reply_code, e.reply_text)
    good = (outcome == "allowed") if allowed else (outcome == "refused 403")
    if not good:
        failures += 1
    print("%s %-12s %-60s %s" % ("ok  " if good else "FAIL", role, what, outcome + ("" if good else " (expected %s)" % ("allowed" if allowed else "refused 403"))))
    if ch.is_open:
        ch.close()


def publish(exchange, key, headers=None, mandatory=True):
    # Confirmed; with mandatory an unroutable message raises UnroutableError (a failure we want to see too).
    return lambda ch: ch.basic_publish(exchange, key, b'{"check":true}',
                                       pika.BasicProperties(delivery_mode=2, headers=headers or {}),
                                       mandatory=mandatory)


def get(queue):
    return lambda ch: ch.basic_get(queue, auto_ack=True)


def declare(queue, **kw):
    return lambda ch: ch.queue_declare(queue, **kw)


WORK = {"x-queue-type": "quorum", "x-dead-letter-exchange": "warren.dead",
        "x-dead-letter-routing-key": "warren.transactions", "x-delivery-limit": 20,
        "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
RETRY_1S = {"x-queue-type": "classic", "x-message-ttl": 1000, "x-dead-letter-exchange": ""}

# Producer: write warren.jobs only.
c = connect("producer")
expect(c, "producer", "publish warren.jobs misc.check", True, publish("warren.jobs", "misc.check"))
expect(c, "producer", "get warren.default", False, get("warren.default"))
expect(c, "producer", "publish warren.dead", False, publish("warren.dead", "warren.default"))
expect(c, "producer", "publish warren.retry", False, publish("warren.retry", "x", {"warren-tier": "1s"}))
expect(c, "producer", "declare exchange warren.jobs", False, lambda ch: ch.exchange_declare("warren.jobs", "topic", durable=True))
expect(c, "producer", "declare queue warren.mine", False, declare("warren.mine", durable=True))
expect(c, "producer", "publish default exchange to warren.default", False, publish("", "warren.default"))
c.close()

# Worker: the whole topology declaration, as Topology.declare does it, then its own traffic.
c = connect("worker")
expect(c, "worker", "declare exchanges (jobs, retry, dead, events, metrics)", True, lambda ch: [
    ch.exchange_declare(n, t, durable=True) for n, t in
    [("warren.jobs", "topic"), ("warren.retry", "headers"), ("warren.dead", "direct"), ("warren.events", "topic"),
     ("warren.metrics", "fanout")]])
expect(c, "worker", "declare+bind warren.retry.1s (x-dead-letter-exchange '')", True, lambda ch: [
    ch.queue_declare("warren.retry.1s", durable=True, arguments=RETRY_1S),
    ch.queue_bind("warren.retry.1s", "warren.retry", "", {"x-match": "all", "warren-tier": "1s"})])
expect(c, "worker", "declare+bind warren.transactions.dead", True, lambda ch: [
    ch.queue_declare("warren.transactions.dead", durable=True, arguments={"x-queue-type": "quorum"}),
    ch.queue_bind("warren.transactions.dead", "warren.dead", "warren.transactions")])
expect(c, "worker", "declare+bind warren.transactions (DLX warren.dead)", True, lambda ch: [
    ch.queue_declare("warren.transactions", durable=True, arguments=WORK),
    ch.queue_bind("warren.transactions", "warren.jobs", "transactions.*")])
expect(c, "worker", "consume/get warren.default (the producer's message)", True, get("warren.default"))
expect(c, "worker", "publish warren.retry (retry copy)", True, publish("warren.retry", "warren.default", {"warren-tier": "1s"}))
expect(c, "worker", "publish warren.events worker.heartbeat", True,
       publish("warren.events", "worker.heartbeat", mandatory=False))
expect(c, "worker", "publish warren.dead (dead letter)", True, publish("warren.dead", "warren.transactions"))
expect(c, "worker", "publish warren.jobs", False, publish("warren.jobs", "misc.check"))
expect(c, "worker", "publish warren.metrics", False, publish("warren.metrics", "", mandatory=False))
expect(c, "worker", "get warren.transactions.dead", False, get("warren.transactions.dead"))
expect(c, "worker", "get warren.schedule.demo-report.last", False, get("warren.schedule.demo-report.last"))
expect(c, "worker", "declare warren.coordinator.leader", False,
       declare("warren.coordinator.leader", exclusive=True, auto_delete=True))
expect(c, "worker", "declare server-named queue (amq.gen-*)", False, declare("", exclusive=True, auto_delete=True))
c.close()

# Coordinator: the topology too, its state queues, leadership, fires, metrics, and the events queue.
c = connect("coordinator")
expect(c, "coordinator", "declare warren.transactions (topology on connect)", True,
       declare("warren.transactions", durable=True, arguments=WORK))
expect(c, "coordinator", "declare+bind warren.schedule.demo-report.last", True, lambda ch: [
    ch.queue_declare("warren.schedule.demo-report.last", durable=True,
                     arguments={"x-queue-type": "classic", "x-max-length": 1}),
    ch.queue_bind("warren.schedule.demo-report.last", "warren.jobs", "_warren.schedule.demo-report")])
expect(c, "coordinator", "declare exclusive warren.coordinator.leader", True,
       declare("warren.coordinator.leader", exclusive=True, auto_delete=True))
expect(c, "coordinator", "publish warren.jobs fire with BCC to the state queue", True,
       publish("warren.jobs", "reports.daily", {"BCC": ["_warren.schedule.demo-report"]}))
expect(c, "coordinator", "get warren.schedule.demo-report.last", True, get("warren.schedule.demo-report.last"))
expect(c, "coordinator", "publish warren.metrics", True, publish("warren.metrics", "", mandatory=False))
def events_queue(ch):
    q = ch.queue_declare("", durable=False, exclusive=True, auto_delete=True).method.queue
    ch.queue_bind(q, "warren.events", "worker.heartbeat")
    ch.queue_bind(q, "warren.events", "job.*")
    ch.basic_consume(q, lambda *a: None)
expect(c, "coordinator", "declare+bind+consume amq.gen-* on warren.events", True, events_queue)
expect(c, "coordinator", "passive declare warren.reports (queue figures)", True,
       declare("warren.reports", passive=True))
c.close()

# Ops: inspect and replay dead letters, enqueue jobs; nothing else.
c = connect("ops")
expect(c, "ops", "get warren.transactions.dead", True, get("warren.transactions.dead"))
expect(c, "ops", "replay: publish default exchange to warren.transactions", True, publish("", "warren.transactions"))
expect(c, "ops", "publish warren.jobs", True, publish("warren.jobs", "misc.check"))
expect(c, "ops", "get warren.transactions", False, get("warren.transactions"))
expect(c, "ops", "publish warren.retry", False, publish("warren.retry", "x", {"warren-tier": "1s"}))
expect(c, "ops", "declare queue warren.mine", False, declare("warren.mine", durable=True))
expect(c, "ops", "delete queue warren.transactions.dead", False, lambda ch: ch.queue_delete("warren.transactions.dead"))
c.close()

print("permission checks: %s" % ("all passed" if failures == 0 else "%d FAILED" % failures))
sys.exit(1 if failures else 0)

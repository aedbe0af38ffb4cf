#!/usr/bin/python3
"""Declare the demo's exchange and queue: `warren.jobs` (topic) and the quorum queue `warren.demo`, bound to
`demo.#`. The worker will declare Warren's full topology itself; until then the demo uses this."""
import os

import pika

url = os.environ.get("WARREN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
channel.exchange_declare("warren.jobs", exchange_type="topic", durable=True)
channel.queue_declare("warren.demo", durable=True, arguments={"x-queue-type": "quorum"})
channel.queue_bind("warren.demo", "warren.jobs", routing_key="demo.#")
connection.close()
print("declared exchange warren.jobs and queue warren.demo (demo.#)")

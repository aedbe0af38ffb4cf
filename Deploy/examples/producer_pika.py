#!/usr/bin/python3
"""Publish Warren jobs from Python with pika, the way any producer should: persistent JSON, a message id,
publisher confirms, and mandatory so an unroutable job is an error instead of silently dropped.

    /usr/bin/python3 Deploy/examples/producer_pika.py --task demo.greet --payload '{"name": "Ada"}'

Uses Debian's python3-pika (call /usr/bin/python3; a pyenv python3 on PATH does not see it).
"""
import argparse
import json
import os
import sys
import uuid

import pika


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("WARREN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--exchange", default="warren.jobs")
    parser.add_argument("--task", help="task type, used as the routing key")
    parser.add_argument("--payload", default="{}", help="the job's JSON payload")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--jobs-file", help='JSON lines of {"task": ..., "payload": {...}} to enqueue instead')
    args = parser.parse_args()

    if args.jobs_file:
        with open(args.jobs_file) as lines:
            jobs = [json.loads(line) for line in lines if line.strip()]
    elif args.task:
        jobs = [{"task": args.task, "payload": json.loads(args.payload)}] * args.count
    else:
        parser.error("--task or --jobs-file is required")

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    channel.confirm_delivery()
    for job in jobs:
        task, payload = job["task"], job["payload"]
        job_id = str(uuid.uuid4())
        try:
            channel.basic_publish(
                exchange=args.exchange,
                routing_key=task,
                body=json.dumps(payload).encode(),
                properties=pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,
                    message_id=job_id,
                    app_id="producer_pika.py",
                ),
                mandatory=True,
            )
        except pika.exceptions.UnroutableError:
            print(f"job {job_id} ({task}) was not routed to any queue", file=sys.stderr)
            return 1
        except pika.exceptions.NackError:
            print(f"job {job_id} ({task}) was refused by the broker", file=sys.stderr)
            return 1
        print(f"enqueued {task} {job_id} (pika, confirmed)")
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

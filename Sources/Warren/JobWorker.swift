import Foundation
import Synchronization
import WarrenAMQP

/// Consumes Warren's work queues and runs jobs: at most `concurrency` at once, each acknowledged only after its
/// handler returned, and every failure ends retried (through the TTL ladder) or dead-lettered with its reason.
///
/// Two connections: one consumes (and acks), one publishes retries, dead letters and events with confirms. A retry
/// or dead letter is confirmed by the broker before the original is acked, so a crash in between duplicates at
/// most, never loses. Both reconnect by themselves; an outcome for a delivery from before a reconnect is dropped
/// (the broker redelivers that message) and logged.
///
/// ```swift
/// var registry = JobRegistry()
/// registry.register(SendEmail.self) { email, context in try await send(email) }
/// let worker = try JobWorker(configuration: configuration, registry: registry, logger: logger)
/// try await worker.run()   // until shutdown() (SIGTERM in `warren worker`)
/// ```
public final class JobWorker: Sendable {
    public let configuration: WarrenConfiguration
    let registry: JobRegistry
    let logger: Logger
    let consumer: AMQPClient
    let publisher: AMQPClient
    let ladder: RetryLadder
    public let counters = WorkerCounters()
    /// Times out attempts past their deadline (one watcher for all jobs, not a timer task per job).
    let deadlines = DeadlineWatcher()
    /// Identifies this worker in events and logs: `host:pid:random`.
    public let workerID: String
    let startedAt = Date()
    private let state = Mutex(State())

    private struct State {
        /// Handlers running: at most `worker.concurrency`.
        var running = 0
        /// Deliveries taken and not yet settled (running, or publishing their retry copy or dead letter).
        var inFlight = 0
        var shuttingDown = false
        var slotWaiter: CheckedContinuation<Void, Never>?
        var idleWaiters: [@Sendable () -> Void] = []
        var deliveries: AsyncStream<(Delivery, QueueSettings)>.Continuation?
        var consumerTags: [String] = []
        var metricsServer: MetricsHTTPServer?
    }

    public init(
        configuration: WarrenConfiguration, registry: JobRegistry, logger: Logger,
        connectionName: String = "warren-worker"
    ) throws {
        try configuration.validate()
        try registry.validate()
        self.configuration = configuration
        self.registry = registry
        let host = ProcessInfo.processInfo.hostName
        let pid = ProcessInfo.processInfo.processIdentifier
        workerID = "\(host):\(pid):\(UUID().uuidString.prefix(6).lowercased())"
        self.logger = logger.with(["worker.id": workerID])
        ladder = RetryLadder(tiers: configuration.retryTiers)
        let topology = Topology(configuration: configuration)
        consumer = try configuration.makeAMQPClient(
            connectionName: connectionName + "-consume", onConnect: { try topology.declare(on: $0) })
        publisher = try configuration.makeAMQPClient(connectionName: connectionName + "-publish")
    }

    /// The queues this worker consumes.
    public var consumedQueues: [QueueSettings] {
        guard let names = configuration.worker.queues else { return configuration.queues }
        return configuration.queues.filter { names.contains($0.name) }
    }

    /// Connects, declares the topology, consumes, and runs jobs until ``shutdown()``; then finishes the jobs in
    /// flight within `worker.shutdownGrace`, acks them, and closes. Jobs still running after the grace period stay
    /// unacknowledged, so the broker gives them to another worker.
    public func run() async throws {
        // The consumer connection declares the topology on every (re)connect, before consuming.
        try await consumer.connect()
        do {
            try await publisher.connect()
        } catch {
            await consumer.close()
            throw error
        }
        let (stream, sink) = AsyncStream.makeStream(of: (Delivery, QueueSettings).self)
        let alreadyStopping = state.withLock { s -> Bool in
            s.deliveries = sink
            return s.shuttingDown
        }
        let monitor = Task { await monitorConnections() }
        let watching = Task { [deadlines] in await deadlines.run() }
        let heartbeat = Task { await publishHeartbeats() }
        let metricsServer = try startMetricsServer()
        defer {
            monitor.cancel()
            watching.cancel()
            heartbeat.cancel()
            metricsServer?.stop()
        }
        if !alreadyStopping {
            for queue in consumedQueues {
                let name = configuration.queueName(queue)
                let tag = try await consumer.consume(queue: name, prefetch: UInt16(prefetch)) { delivery in
                    sink.yield((delivery, queue))
                }
                state.withLock { $0.consumerTags.append(tag) }
            }
        }
        logger.info(
            "worker started",
            [
                "worker.queues": consumedQueues.map { configuration.queueName($0) }.joined(separator: ","),
                "worker.concurrency": "\(configuration.worker.concurrency)", "worker.prefetch": "\(prefetch)",
                "worker.tasks": registry.taskNames.joined(separator: ","),
            ])
        if alreadyStopping { sink.finish() }

        for await (delivery, queue) in stream {
            if state.withLock({ $0.shuttingDown }) {
                // Not started before shutdown: back to the queue for another worker.
                consumer.reject(delivery.tag, requeue: true)
                continue
            }
            await acquireSlot()
            let job = JobTask()
            job.set(
                Task {
                    // The slot is freed as soon as the handler returned: waiting for the broker to confirm a retry
                    // copy or dead letter is not handler work. The delivery stays unacknowledged until settled, so
                    // the prefetch window bounds how many jobs are settling.
                    let slot = Slot(release: releaseSlot)
                    await process(delivery, from: queue, job: job, handlerFinished: slot.release)
                    slot.release()
                    jobSettled()
                })
        }
        let drained = await waitUntilIdle(timeout: configuration.worker.shutdownGrace)
        let left = state.withLock { $0.inFlight }
        if drained {
            logger.info("worker stopped: every job in flight finished", counters.metadata)
        } else {
            logger.warning(
                "worker stopped with jobs still running after the grace period; the broker will redeliver them",
                counters.metadata.merging(["jobs.unfinished": "\(left)"]) { $1 })
        }
        await publisher.close()
        await consumer.close()
    }

    /// Starts a graceful shutdown: stop consuming, let jobs in flight finish. ``run()`` returns when done.
    public func shutdown() {
        let (tags, sink) = state.withLock { s -> ([String], AsyncStream<(Delivery, QueueSettings)>.Continuation?) in
            guard !s.shuttingDown else { return ([], nil) }
            s.shuttingDown = true
            return (s.consumerTags, s.deliveries)
        }
        guard let sink else { return }
        logger.info("shutting down: no new jobs; waiting for the ones in flight", ["jobs.in_flight": "\(inFlight)"])
        Task {
            for tag in tags { try? await consumer.cancel(consumerTag: tag) }
            sink.finish()
        }
    }

    public var inFlight: Int { state.withLock { $0.inFlight } }

    /// The port of the worker's `/metrics` listener once it runs (nil when `worker.metricsPort` is not set).
    public var metricsPort: Int? { state.withLock { $0.metricsServer?.port } }

    /// The worker's own counters in Prometheus text (served on `worker.metricsPort` when set).
    public func prometheusText() -> String {
        var text = PrometheusText()
        let worker = ["worker": workerID]
        text.gauge("warren_worker_jobs_in_flight", help: "Jobs running in this worker.", [(worker, Double(inFlight))])
        text.gauge(
            "warren_worker_concurrency", help: "Jobs this worker runs at once at most.",
            [(worker, Double(configuration.worker.concurrency))])
        text.counter(
            "warren_worker_jobs_total", help: "Jobs this worker finished, by outcome.",
            [
                ("succeeded", counters.succeeded.load(ordering: .relaxed)),
                ("retried", counters.retried.load(ordering: .relaxed)),
                ("dead", counters.dead.load(ordering: .relaxed)), ("failed", counters.failed.load(ordering: .relaxed)),
            ].map { outcome, count in (worker.merging(["outcome": outcome]) { $1 }, Double(count)) })
        text.gauge(
            "warren_worker_connected", help: "1 while both broker connections are up.",
            [(worker, consumer.isConnected && publisher.isConnected ? 1 : 0)])
        text.gauge(
            "warren_worker_resident_memory_bytes", help: "Resident set size of the worker process.",
            [(worker, Double(WorkerCounters.residentBytes()))])
        return text.text
    }

    /// Serves `/metrics` and `/healthz` on `worker.metricsHost:metricsPort` when a port is configured.
    private func startMetricsServer() throws -> MetricsHTTPServer? {
        guard let port = configuration.worker.metricsPort else { return nil }
        let server = MetricsHTTPServer(host: configuration.worker.metricsHost, port: port) { [self] _, path in
            switch path {
            case "/metrics": .prometheus(prometheusText())
            case "/healthz":
                consumer.isConnected && publisher.isConnected
                    ? .text("ok\n") : .text("broker connection down\n", status: 503)
            default: nil
            }
        }
        try server.start()
        state.withLock { $0.metricsServer = server }
        logger.info("metrics listening", ["http.address": "\(configuration.worker.metricsHost):\(server.port)"])
        return server
    }

    var prefetch: Int { configuration.worker.prefetch ?? configuration.worker.concurrency }

    // MARK: Concurrency

    private func acquireSlot() async {
        await withCheckedContinuation { (slot: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { s -> Bool in
                s.inFlight += 1
                if s.running < configuration.worker.concurrency {
                    s.running += 1
                    return true
                }
                s.slotWaiter = slot
                return false
            }
            if granted { slot.resume() }
        }
    }

    @Sendable private func releaseSlot() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let waiter = s.slotWaiter {
                // The slot passes straight to the waiting delivery.
                s.slotWaiter = nil
                return waiter
            }
            s.running -= 1
            return nil
        }
        waiter?.resume()
    }

    private func jobSettled() {
        let idle = state.withLock { s -> [@Sendable () -> Void] in
            s.inFlight -= 1
            guard s.inFlight == 0 else { return [] }
            defer { s.idleWaiters = [] }
            return s.idleWaiters
        }
        for notify in idle { notify() }
    }

    /// Waits until no job is in flight, or `timeout` passes; true when idle.
    private func waitUntilIdle(timeout: Duration) async -> Bool {
        let idle = Once<Bool>()
        return await withCheckedContinuation { (done: CheckedContinuation<Bool, Never>) in
            idle.set(done)
            let isIdle = state.withLock { s -> Bool in
                if s.inFlight == 0 { return true }
                s.idleWaiters.append { idle.resume(true) }
                return false
            }
            if isIdle { idle.resume(true) }
            Task {
                try? await Task.sleep(for: timeout)
                idle.resume(false)
            }
        }
    }

    // MARK: One job

    enum HandlerOutcome {
        case success
        case failure(Error)
    }

    /// Runs one delivery to its end: handler, then ack, retry copy or dead letter. `handlerFinished` is called when
    /// the handler has returned (or was never run), before the settlement.
    func process(
        _ delivery: Delivery, from queue: QueueSettings, job: JobTask, handlerFinished: @Sendable () -> Void = {}
    ) async {
        let queueName = configuration.queueName(queue)
        let envelope: JobEnvelope
        do {
            envelope = try JobEnvelope(delivery)
        } catch {
            await deadLetter(delivery, queue: queueName, envelope: nil, reason: .malformed, error: error.description)
            return
        }
        if delivery.body.count > configuration.worker.maxBodyBytes {
            await deadLetter(
                delivery, queue: queueName, envelope: envelope, reason: .oversized,
                error: "body of \(delivery.body.count) bytes exceeds worker.maxBodyBytes "
                    + "(\(configuration.worker.maxBodyBytes))")
            return
        }
        let now = Date()
        if let expiresAt = envelope.expiresAt, expiresAt <= now {
            await deadLetter(
                delivery, queue: queueName, envelope: envelope, reason: .expired,
                error: "expired at \(expiresAt.rfc3339) before it ran")
            return
        }
        if let notBefore = envelope.notBefore, notBefore > now {
            // Not due yet: another hop on the ladder, holding nothing in memory.
            await republishForLater(
                delivery, queue: queueName, envelope: envelope, attempt: envelope.attempt, notBefore: notBefore,
                lastError: nil, isRetry: false)
            return
        }
        guard let entry = registry.entry(for: envelope.taskName) else {
            await deadLetter(
                delivery, queue: queueName, envelope: envelope, reason: .unknownTask,
                error: "no handler for task type '\(envelope.taskName)' (this worker runs: "
                    + "\(registry.taskNames.joined(separator: ", ")))")
            return
        }
        let policy = configuration.retryPolicy(forTask: envelope.taskName)
        let maxAttempts = envelope.maxAttempts ?? policy.maxAttempts
        let timeLimit = configuration.timeLimit(forTask: envelope.taskName)
        let jobLogger = logger.with([
            "job.id": envelope.id, "job.name": envelope.taskName, "job.attempt": "\(envelope.attempt)",
            "amqp.queue": queueName,
        ])
        let context = JobContext(
            id: envelope.id, taskName: envelope.taskName, attempt: envelope.attempt, maxAttempts: maxAttempts,
            queuedAt: envelope.enqueuedAt, routingKey: delivery.routingKey, queue: queueName,
            deadline: timeLimit.map { ContinuousClock.now + $0 },
            headers: (delivery.properties.headers ?? [:]).entries.compactMapValues {
                $0.stringValue ?? $0.intValue.map(String.init)
            },
            logger: jobLogger)
        let started = ContinuousClock.now
        let onTimeout: @Sendable (Duration) -> Void = { [self] limit in
            // The watcher won the race: settle the job as timed out now, while the handler may still be running
            // (cancelled; it keeps its concurrency slot until it returns, and its result is dropped).
            state.withLock { $0.inFlight += 1 }
            Task {
                counters.processed.add(1, ordering: .relaxed)
                await settleFailure(
                    delivery, queue: queueName, envelope: envelope, policy: policy, maxAttempts: maxAttempts,
                    failure: Self.timeoutText(limit, task: envelope.taskName))
                jobSettled()
            }
        }
        guard
            let outcome = await runHandler(
                entry, body: delivery.body, context: context, timeLimit: timeLimit, job: job, onTimeout: onTimeout)
        else {
            return  // timed out: settled by the watcher
        }
        let elapsed = ContinuousClock.now - started
        handlerFinished()
        counters.processed.add(1, ordering: .relaxed)

        let failure: String
        switch outcome {
        case .success:
            consumer.ack(delivery.tag)
            counters.succeeded.add(1, ordering: .relaxed)
            jobLogger.debug("job succeeded", ["job.duration_ms": "\(elapsed.milliseconds)"])
            emitEvent(
                "job.succeeded", envelope: envelope, queue: queueName,
                extra: ["durationMs": "\(elapsed.milliseconds)"])
            return
        case .failure(let error as PermanentJobError):
            counters.failed.add(1, ordering: .relaxed)
            await deadLetter(
                delivery, queue: queueName, envelope: envelope, reason: .permanent, error: error.message)
            return
        case .failure(let error as JobDecodingError):
            await deadLetter(delivery, queue: queueName, envelope: envelope, reason: .malformed, error: "\(error)")
            return
        case .failure(let error):
            failure = "\(error)"
        }
        await settleFailure(
            delivery, queue: queueName, envelope: envelope, policy: policy, maxAttempts: maxAttempts, failure: failure)
    }

    static func timeoutText(_ limit: Duration, task: String) -> String {
        "timed out after \(DurationText.format(limit)) (time limit of \(task))"
    }

    /// A retryable failure: the retry ladder, or a dead letter when the attempts are used up.
    private func settleFailure(
        _ delivery: Delivery, queue queueName: String, envelope: JobEnvelope, policy: RetryPolicy, maxAttempts: Int,
        failure: String
    ) async {
        counters.failed.add(1, ordering: .relaxed)
        if envelope.attempt >= maxAttempts {
            await deadLetter(
                delivery, queue: queueName, envelope: envelope, reason: .exhausted,
                error: "failed \(envelope.attempt) of \(maxAttempts) attempts; last error: \(failure)")
            return
        }
        let delay = policy.delay(afterAttempt: envelope.attempt)
        let notBefore = Date().addingTimeInterval(delay.seconds)
        await republishForLater(
            delivery, queue: queueName, envelope: envelope, attempt: envelope.attempt + 1, notBefore: notBefore,
            lastError: failure, isRetry: true)
    }

    /// Runs the handler in the job's own task. With a time limit, the worker's ``DeadlineWatcher`` cancels the job
    /// at the deadline and calls `onTimeout`; then this returns nil when the handler comes back (its result dropped).
    private func runHandler(
        _ entry: JobRegistry.Entry, body: Data, context: JobContext, timeLimit: Duration?, job: JobTask,
        onTimeout: @escaping @Sendable (Duration) -> Void
    ) async -> HandlerOutcome? {
        var attempt: DeadlineWatcher.Attempt?
        if let timeLimit {
            let watched = DeadlineWatcher.Attempt(deadline: .now + timeLimit) {
                job.cancel()
                onTimeout(timeLimit)
            }
            deadlines.add(watched)
            attempt = watched
        }
        let outcome: HandlerOutcome
        do {
            try await entry.run(body, context)
            outcome = .success
        } catch {
            outcome = .failure(error)
        }
        guard let attempt else { return outcome }
        deadlines.remove(attempt)
        return attempt.finish() ? outcome : nil
    }

    // MARK: Retries and dead letters

    /// Publishes a copy to the retry ladder (confirmed), then acks the original.
    private func republishForLater(
        _ delivery: Delivery, queue: String, envelope: JobEnvelope, attempt: Int, notBefore: Date, lastError: String?,
        isRetry: Bool
    ) async {
        let remaining = Duration.milliseconds(max(0, notBefore.epochMilliseconds - Date().epochMilliseconds))
        let tier = ladder.tier(forRemaining: remaining)
        var headers = delivery.properties.headers ?? [:]
        headers[WarrenHeader.attempt] = .int64(Int64(attempt))
        headers[WarrenHeader.task] = .string(envelope.taskName)
        headers[WarrenHeader.notBefore] = .int64(notBefore.epochMilliseconds)
        headers[WarrenHeader.tier] = .string(DurationText.format(tier))
        if let enqueuedAt = envelope.enqueuedAt {
            headers[WarrenHeader.enqueuedAt] = .int64(enqueuedAt.epochMilliseconds)
        }
        if let expiresAt = envelope.expiresAt { headers[WarrenHeader.expires] = .int64(expiresAt.epochMilliseconds) }
        if let lastError { headers[WarrenHeader.lastError] = .string(Self.oneLine(lastError)) }
        var properties = delivery.properties
        properties.headers = Self.forwardable(headers)
        properties.messageID = envelope.id
        properties.expiration = nil
        properties.deliveryMode = .persistent
        let message = OutgoingMessage(
            exchange: configuration.retryExchange, routingKey: queue, body: Array(delivery.body),
            properties: properties, mandatory: true)
        do {
            try await publisher.publish(message)
            consumer.ack(delivery.tag)
        } catch {
            consumer.nack(delivery.tag, requeue: true)
            logger.error(
                "could not publish the retry copy; the job goes back to its queue",
                ["job.id": envelope.id, "job.name": envelope.taskName, "error": "\(error)"])
            return
        }
        guard isRetry else { return }
        counters.retried.add(1, ordering: .relaxed)
        logger.info(
            "job failed; retrying later",
            [
                "job.id": envelope.id, "job.name": envelope.taskName, "job.attempt": "\(attempt - 1)",
                "job.next_attempt": "\(attempt)", "job.not_before": notBefore.rfc3339,
                "error": Self.oneLine(lastError ?? ""),
            ])
        emitEvent(
            "job.retrying", envelope: envelope, queue: queue,
            extra: [
                "error": Self.oneLine(lastError ?? ""), "nextAttempt": "\(attempt)", "notBefore": notBefore.rfc3339,
            ])
    }

    /// Publishes the message to the dead-letter exchange with the reason (confirmed), then acks the original.
    private func deadLetter(
        _ delivery: Delivery, queue: String, envelope: JobEnvelope?, reason: DeadLetterReason, error: String
    ) async {
        let error = Self.oneLine(error)
        var headers = delivery.properties.headers ?? [:]
        headers[WarrenHeader.error] = .string(error)
        headers[WarrenHeader.errorType] = .string(reason.rawValue)
        headers[WarrenHeader.attempts] = .int64(Int64(envelope?.attempt ?? 1))
        headers[WarrenHeader.originQueue] = .string(queue)
        headers[WarrenHeader.routingKey] = .string(envelope?.taskName ?? delivery.routingKey)
        headers[WarrenHeader.failedAt] = .string(Date().rfc3339)
        var properties = delivery.properties
        properties.headers = Self.forwardable(headers)
        if let envelope {
            properties.messageID = envelope.id
        } else if (properties.messageID ?? "").isEmpty {
            // Headers too broken for an envelope, and no id: invent one, so `warren dead show/replay` can name it.
            properties.messageID = JobID.random()
        }
        properties.expiration = nil
        properties.deliveryMode = .persistent
        let message = OutgoingMessage(
            exchange: configuration.deadExchange, routingKey: queue, body: Array(delivery.body), properties: properties,
            mandatory: true)
        let id = properties.messageID ?? "(none)"
        do {
            try await publisher.publish(message)
            consumer.ack(delivery.tag)
        } catch let publishError {
            consumer.nack(delivery.tag, requeue: true)
            logger.error(
                "could not publish the dead letter; the job goes back to its queue",
                ["job.id": id, "error": "\(publishError)", "dead.reason": reason.rawValue])
            return
        }
        counters.dead.add(1, ordering: .relaxed)
        logger.error(
            "job dead-lettered",
            [
                "job.id": id, "job.name": envelope?.taskName ?? delivery.routingKey, "dead.reason": reason.rawValue,
                "dead.queue": queue + ".dead", "error": error,
            ])
        emitEvent(
            "job.dead", id: id, task: envelope?.taskName ?? delivery.routingKey, attempt: envelope?.attempt ?? 1,
            queue: queue, extra: ["error": error, "reason": reason.rawValue])
    }

    /// The most header bytes a retry copy or dead letter carries: well inside one frame (RabbitMQ's frame_max is
    /// 128 KiB), with room for what the broker adds (`x-death`, `x-delivery-count`) on its way.
    static let forwardedHeaderLimit = 64 * 1024

    /// `headers` as they can be forwarded: when the producer's headers make the table larger than
    /// ``forwardedHeaderLimit``, Warren's own headers are kept, the others dropped, and `x-warren-headers-dropped`
    /// says how many and how large they were. (Such a table would not fit a frame once Warren's headers are added:
    /// the publish could not be sent, and the job would go round the queue until its delivery limit.)
    static func forwardable(_ headers: FieldTable) -> FieldTable {
        let size = headers.encodedSize
        guard size > forwardedHeaderLimit else { return headers }
        var kept = FieldTable()
        var dropped = 0
        for (key, value) in headers.entries {
            // Warren's own (short: the error texts are cut to one line of 2,000 characters).
            if WarrenHeader.all.contains(key), value.encodedSize <= 16 * 1024 {
                kept[key] = value
            } else {
                dropped += 1
            }
        }
        kept[WarrenHeader.headersDropped] = .string(
            "\(dropped) headers (\(size) bytes in all) dropped: too large to forward")
        return kept
    }

    static func oneLine(_ text: String, limit: Int = 2000) -> String {
        // Most errors are one short line already: check the bytes before building anything.
        if text.utf8.count <= limit, !text.utf8.contains(where: { $0 == 10 || $0 == 13 }) { return text }
        let flat = String(text.map { $0 == "\n" || $0 == "\r" || $0 == "\r\n" ? " " : $0 })
        return flat.count > limit ? String(flat.prefix(limit)) + "…" : flat
    }

    // MARK: Events

    private func emitEvent(_ name: String, envelope: JobEnvelope, queue: String, extra: [String: String]) {
        emitEvent(name, id: envelope.id, task: envelope.taskName, attempt: envelope.attempt, queue: queue, extra: extra)
    }

    private func emitEvent(
        _ name: String, id: String, task: String, attempt: Int, queue: String, extra: [String: String]
    ) {
        guard configuration.worker.lifecycleEvents else { return }
        var fields = extra
        fields["event"] = name
        fields["jobID"] = id
        fields["task"] = task
        fields["queue"] = queue
        fields["attempt"] = "\(attempt)"
        fields["worker"] = workerID
        fields["ts"] = Date().rfc3339
        publishEvent(name, fields: fields)
    }

    private func publishEvent(_ routingKey: String, fields: [String: String]) {
        guard let body = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        let message = OutgoingMessage(
            exchange: configuration.eventsExchange, routingKey: routingKey, body: Array(body),
            properties: BasicProperties(contentType: "application/json", deliveryMode: .transient))
        let publisher = self.publisher
        let logger = self.logger
        Task {
            do {
                try await publisher.publish(message)
            } catch {
                logger.debug("event not published", ["event": routingKey, "error": "\(error)"])
            }
        }
    }

    private func publishHeartbeats() async {
        while !Task.isCancelled {
            var fields = counters.metadata.reduce(into: [String: String]()) { $0[$1.key] = $1.value }
            fields["event"] = "worker.heartbeat"
            fields["worker"] = workerID
            fields["host"] = ProcessInfo.processInfo.hostName
            fields["pid"] = "\(ProcessInfo.processInfo.processIdentifier)"
            fields["queues"] = consumedQueues.map { configuration.queueName($0) }.joined(separator: ",")
            fields["concurrency"] = "\(configuration.worker.concurrency)"
            fields["inFlight"] = "\(inFlight)"
            fields["rssBytes"] = "\(WorkerCounters.residentBytes())"
            fields["uptimeSeconds"] = "\(Int(Date().timeIntervalSince(startedAt)))"
            fields["ts"] = Date().rfc3339
            publishEvent("worker.heartbeat", fields: fields)
            try? await Task.sleep(for: configuration.worker.heartbeatInterval)
        }
    }

    private func monitorConnections() async {
        await withTaskGroup(of: Void.self) { group in
            for (client, role) in [(consumer, "consume"), (publisher, "publish")] {
                group.addTask { [logger] in
                    for await event in client.events {
                        switch event {
                        case .connected(let generation, let endpoint) where generation > 1:
                            logger.warning(
                                "reconnected", ["amqp.connection": role, "amqp.endpoint": endpoint])
                        case .disconnected(let error):
                            logger.error(
                                "connection lost; reconnecting", ["amqp.connection": role, "error": "\(error)"])
                        case .reconnectFailed(let error):
                            logger.warning(
                                "reconnect failed; trying again", ["amqp.connection": role, "error": "\(error)"])
                        case .staleOutcomeDropped(let tag):
                            logger.warning(
                                "a job finished after its connection was lost; not acked, the broker redelivers it",
                                ["amqp.delivery_tag": "\(tag)"])
                        case .consumerCancelled(_, let queue):
                            logger.error("the broker cancelled the consumer (queue deleted?)", ["amqp.queue": queue])
                        case .blocked(let reason):
                            logger.warning("the broker blocked publishing", ["reason": reason])
                        case .channelClosed(let channel, let error):
                            logger.warning(
                                "the broker closed a channel",
                                ["amqp.connection": role, "amqp.channel": "\(channel)", "error": "\(error)"])
                        default:
                            break
                        }
                    }
                }
            }
        }
    }
}

/// Running totals of a worker.
public final class WorkerCounters: Sendable {
    public let processed = Atomic<Int>(0)
    public let succeeded = Atomic<Int>(0)
    public let failed = Atomic<Int>(0)
    public let retried = Atomic<Int>(0)
    public let dead = Atomic<Int>(0)

    var metadata: [String: String] {
        [
            "jobs.processed": "\(processed.load(ordering: .relaxed))",
            "jobs.succeeded": "\(succeeded.load(ordering: .relaxed))",
            "jobs.failed": "\(failed.load(ordering: .relaxed))",
            "jobs.retried": "\(retried.load(ordering: .relaxed))",
            "jobs.dead": "\(dead.load(ordering: .relaxed))",
        ]
    }

    static func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes * 1024
    }
}

/// The task running one job, so the deadline watcher can cancel it.
final class JobTask: Sendable {
    private let task = Mutex<Task<Void, Never>?>(nil)

    func set(_ task: Task<Void, Never>) { self.task.withLock { $0 = task } }
    func cancel() { task.withLock { $0 }?.cancel() }
}

/// Watches the deadlines of the attempts running in a worker: every 20 ms, each attempt past its deadline that has
/// not finished is timed out (its `onTimeout` runs once). One task for the whole worker instead of a timer task per
/// job.
final class DeadlineWatcher: Sendable {
    final class Attempt: Sendable {
        let deadline: ContinuousClock.Instant
        /// 0 running, 1 finished by the handler, 2 timed out by the watcher: whoever moves it from 0 wins.
        private let state = Atomic<UInt8>(0)
        private let onTimeout: @Sendable () -> Void

        init(deadline: ContinuousClock.Instant, onTimeout: @escaping @Sendable () -> Void) {
            self.deadline = deadline
            self.onTimeout = onTimeout
        }

        /// The handler returned: true when it did so before the watcher timed it out.
        func finish() -> Bool {
            state.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged
        }

        fileprivate func timeOut() {
            if state.compareExchange(expected: 0, desired: 2, ordering: .acquiringAndReleasing).exchanged {
                onTimeout()
            }
        }
    }

    private let attempts = Mutex<[ObjectIdentifier: Attempt]>([:])
    static let interval: Duration = .milliseconds(20)

    func add(_ attempt: Attempt) { attempts.withLock { $0[ObjectIdentifier(attempt)] = attempt } }
    func remove(_ attempt: Attempt) { attempts.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(attempt)) } }

    /// Until cancelled.
    func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.interval)
            let now = ContinuousClock.now
            let expired = attempts.withLock { attempts -> [Attempt] in
                let expired = attempts.values.filter { $0.deadline <= now }
                for attempt in expired { attempts.removeValue(forKey: ObjectIdentifier(attempt)) }
                return expired
            }
            for attempt in expired { attempt.timeOut() }
        }
    }
}

/// Calls `release` once, however many times ``release()`` is called.
final class Slot: Sendable {
    private let pending = Atomic<Bool>(true)
    private let onRelease: @Sendable () -> Void

    init(release: @escaping @Sendable () -> Void) { onRelease = release }

    @Sendable func release() {
        if pending.exchange(false, ordering: .acquiringAndReleasing) { onRelease() }
    }
}

/// A continuation resumed by whichever of several racers comes first. `set` it before starting the racers.
final class Once<Value: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<Value, Never>?>(nil)

    func set(_ continuation: CheckedContinuation<Value, Never>) {
        self.continuation.withLock { $0 = continuation }
    }

    /// Resumes with `value` if nobody has yet; returns whether this call did.
    @discardableResult
    func resume(_ value: Value) -> Bool {
        let taken = continuation.withLock { $0.take() }
        guard let taken else { return false }
        taken.resume(returning: value)
        return true
    }
}

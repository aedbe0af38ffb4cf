import Foundation
import Synchronization
import Warren
import WarrenAMQP

/// A configured schedule with its parsed expression.
public struct Schedule: Sendable {
    public var settings: ScheduleSettings
    public var cron: CronExpression
    public var timeZone: TimeZone
}

/// Fires cron schedules exactly once among any number of replicas.
///
/// **Leadership** is an exclusive queue, `<prefix>.coordinator.leader`, declared on this replica's connection: the
/// broker lets one connection hold it and deletes it when that connection dies, so a standby's next attempt (every
/// `coordinator.leaderRetryInterval`) succeeds within seconds of the leader's death.
///
/// **Fencing.** Every fire is published with ``AMQPClient/publish(_:onlyOnGeneration:)`` on the connection that
/// holds the queue: once that connection is gone (and with it the leadership), the old leader cannot publish.
///
/// **Memory.** Each fire is one message routed both to the work queue (by its task type) and, through the `BCC`
/// header, to the schedule's state queue `<prefix>.schedule.<name>.last` (at most one message), in a single confirmed
/// publish: the fire and its record happen together or not at all. A new leader reads the last fire time there,
/// so it neither fires a time again nor silently drops missed ones: the schedule's `missedRuns` policy decides
/// (`skip`: none of them; `once`: the latest missed time, once).
///
/// Each fire is a normal job with `message_id = <schedule>@<fire time, RFC 3339>` and headers
/// `x-warren-schedule`, `x-warren-fire-time`.
public final class Coordinator: Sendable {
    public let configuration: WarrenConfiguration
    public let schedules: [Schedule]
    let logger: Logger
    let client: AMQPClient
    private let state = Mutex(State())

    struct State {
        var leaderGeneration: UInt64?
        var stopping = false
        var cursors: [String: Date] = [:]
        var lastFire: [String: Date] = [:]
        var fires: [String: Int] = [:]
        var connected = false
    }

    public static let scheduleHeader = "x-warren-schedule"
    public static let fireTimeHeader = "x-warren-fire-time"

    public init(configuration: WarrenConfiguration, logger: Logger, connectionName: String = "warren-coordinator")
        throws
    {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        schedules = try Self.parse(configuration.schedules)
        let topology = Topology(configuration: configuration)
        let schedules = self.schedules
        client = try configuration.makeAMQPClient(
            connectionName: connectionName,
            onConnect: { channel in
                try topology.declare(on: channel)
                for schedule in schedules {
                    let queue = Self.stateQueue(configuration, schedule.settings.name)
                    try channel.declareQueue(
                        queue, arguments: ["x-queue-type": "classic", "x-max-length": .int64(1)])
                    try channel.bindQueue(
                        queue, exchange: configuration.jobsExchange,
                        routingKey: Self.stateRoutingKey(schedule.settings.name))
                }
            })
    }

    static func parse(_ settings: [ScheduleSettings]) throws -> [Schedule] {
        try settings.enumerated().map { index, settings in
            let cron: CronExpression
            do {
                cron = try CronExpression(settings.cron)
            } catch {
                throw WarrenError.configuration("schedules[\(index)].cron: \(error)")
            }
            guard let zone = TimeZone(identifier: settings.timeZone) else {
                throw WarrenError.configuration(
                    "schedules[\(index)].timeZone: unknown time zone '\(settings.timeZone)'")
            }
            return Schedule(settings: settings, cron: cron, timeZone: zone)
        }
    }

    static func stateQueue(_ configuration: WarrenConfiguration, _ schedule: String) -> String {
        configuration.scheduleStateQueueName(schedule)
    }

    static func stateRoutingKey(_ schedule: String) -> String { "_warren.schedule.\(schedule)" }

    var leaderQueue: String { "\(configuration.prefix).coordinator.leader" }

    public var isLeader: Bool { state.withLock { $0.leaderGeneration != nil } }
    public var isConnected: Bool { client.isConnected }

    /// Fires so far by schedule name, and the last fire time of each (as this replica knows them).
    public var fireCounts: [String: Int] { state.withLock { $0.fires } }
    public var lastFireTimes: [String: Date] { state.withLock { $0.lastFire } }

    /// The next fire time of each enabled schedule after now.
    public func nextFireTimes(after now: Date = Date()) -> [String: Date] {
        var next: [String: Date] = [:]
        for schedule in schedules where schedule.settings.enabled {
            next[schedule.settings.name] = schedule.cron.next(after: now, in: schedule.timeZone)
        }
        return next
    }

    /// Stops campaigning and firing; ``run()`` returns soon after.
    public func shutdown() { state.withLock { $0.stopping = true } }

    /// Campaigns for leadership and, while leader, fires due schedules. Returns after ``shutdown()``.
    public func run() async throws {
        try await client.connect()
        let monitor = Task { await watchConnection() }
        defer { monitor.cancel() }
        logger.info(
            "coordinator started",
            ["schedules": schedules.map(\.settings.name).joined(separator: ","), "leader.queue": leaderQueue])
        var announcedStandby = false
        while !state.withLock({ $0.stopping }) {
            if let generation = state.withLock({ $0.leaderGeneration }) {
                await fireDue(generation: generation)
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            do {
                let leaderQueue = self.leaderQueue
                let generation = try await client.withChannel { channel, generation in
                    try channel.declareQueue(leaderQueue, durable: false, exclusive: true, autoDelete: true)
                    return generation
                }
                try await takeOver(generation: generation)
                announcedStandby = false
            } catch let error as AMQPError where error.code == .resourceLocked {
                if !announcedStandby {
                    logger.info("standing by: another coordinator is the leader", ["leader.queue": leaderQueue])
                    announcedStandby = true
                }
                try? await Task.sleep(for: configuration.coordinator.leaderRetryInterval)
            } catch {
                logger.warning("could not campaign for leadership", ["error": "\(error)"])
                try? await Task.sleep(for: configuration.coordinator.leaderRetryInterval)
            }
        }
        logger.info("coordinator stopping", ["leader": "\(isLeader)"])
        await client.close()
    }

    /// Becomes leader on connection `generation`: reads each schedule's last fire and applies its missed-run policy.
    private func takeOver(generation: UInt64) async throws {
        let now = Date()
        var cursors: [String: Date] = [:]
        var catchUp: [(Schedule, Date)] = []
        for schedule in schedules where schedule.settings.enabled {
            let name = schedule.settings.name
            let queue = Self.stateQueue(configuration, name)
            let last: Date? = try await client.withChannel { channel in
                guard let (delivery, _) = try channel.get(queue: queue) else { return nil }
                try channel.reject(delivery.tag, requeue: true)
                return delivery.properties.headers?[Self.fireTimeHeader]?.stringValue.flatMap {
                    try? Date($0, strategy: .iso8601)
                }
            }
            guard let last else {
                cursors[name] = now
                continue
            }
            // The fires between the last one and now were missed (no leader, or a slow takeover).
            var missed: [Date] = []
            var cursor = last
            while let next = schedule.cron.next(after: cursor, in: schedule.timeZone), next <= now,
                missed.count < 100_000
            {
                missed.append(next)
                cursor = next
            }
            cursors[name] = missed.last ?? last
            if let latest = missed.last, schedule.settings.missedRuns == .once {
                catchUp.append((schedule, latest))
            }
            if !missed.isEmpty {
                logger.warning(
                    "missed fires while no coordinator led",
                    [
                        "schedule": name, "missed": "\(missed.count)", "last.fire": last.rfc3339String,
                        "policy": schedule.settings.missedRuns.rawValue,
                    ])
            }
        }
        state.withLock { s in
            s.leaderGeneration = generation
            s.cursors = cursors
        }
        logger.info("became the leader", ["amqp.generation": "\(generation)"])
        for (schedule, time) in catchUp {
            _ = await fire(schedule, at: time, generation: generation, catchUp: true)
        }
    }

    private func fireDue(generation: UInt64) async {
        let now = Date()
        for schedule in schedules where schedule.settings.enabled {
            let name = schedule.settings.name
            var fired = 0
            while fired < 10, let cursor = state.withLock({ $0.cursors[name] }),
                let next = schedule.cron.next(after: cursor, in: schedule.timeZone), next <= now
            {
                guard await fire(schedule, at: next, generation: generation, catchUp: false) else { return }
                fired += 1
            }
        }
    }

    /// Publishes one fire (fenced to `generation`); false when leadership was lost.
    private func fire(_ schedule: Schedule, at time: Date, generation: UInt64, catchUp: Bool) async -> Bool {
        let name = schedule.settings.name
        let fireTime = time.rfc3339String
        var headers: FieldTable = [
            Self.scheduleHeader: .string(name), Self.fireTimeHeader: .string(fireTime),
            // Sender-selected distribution: the same message also goes to the schedule's state queue.
            "BCC": .array([.string(Self.stateRoutingKey(name))]),
        ]
        if catchUp { headers["x-warren-catch-up"] = true }
        let message = OutgoingMessage(
            exchange: configuration.jobsExchange, routingKey: schedule.settings.task,
            body: Array(schedule.settings.payloadJSON.utf8),
            properties: BasicProperties(
                contentType: "application/json", headers: headers, deliveryMode: .persistent,
                messageID: "\(name)@\(fireTime)", timestamp: Date(), appID: "warren-coordinator"),
            mandatory: true)
        do {
            try await client.publish(message, onlyOnGeneration: generation)
        } catch let error as AMQPError where error.isConnectionFatal || error.code == .connectionLost {
            state.withLock { if $0.leaderGeneration == generation { $0.leaderGeneration = nil } }
            logger.warning(
                "lost leadership; not fired", ["schedule": name, "fire.time": fireTime, "error": "\(error)"])
            return false
        } catch {
            // Not routable or refused: log and move on, or a broken schedule would stall the others.
            logger.error("schedule could not fire", ["schedule": name, "fire.time": fireTime, "error": "\(error)"])
        }
        state.withLock { s in
            s.cursors[name] = time
            s.lastFire[name] = time
            s.fires[name, default: 0] += 1
        }
        logger.info("schedule fired", ["schedule": name, "fire.time": fireTime, "task": schedule.settings.task])
        return true
    }

    private func watchConnection() async {
        for await event in client.events {
            switch event {
            case .disconnected(let error):
                let wasLeader = state.withLock { s -> Bool in
                    defer { s.leaderGeneration = nil }
                    return s.leaderGeneration != nil
                }
                logger.error(
                    wasLeader ? "connection lost: no longer the leader" : "connection lost", ["error": "\(error)"])
            case .connected(let generation, _) where generation > 1:
                logger.warning("reconnected; campaigning again", ["amqp.generation": "\(generation)"])
            default:
                break
            }
        }
    }
}

extension Date {
    /// RFC 3339 in UTC with whole seconds, e.g. `2026-11-23T10:00:00Z` (the form of fire times).
    var rfc3339String: String { formatted(.iso8601) }
}

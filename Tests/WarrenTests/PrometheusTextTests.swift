import Testing

@testable import Warren

@Suite("Prometheus text format (pure)")
struct PrometheusTextTests {
    @Test func countersAndGaugesHaveHelpTypeAndSortedLabels() {
        var metrics = PrometheusText()
        metrics.counter(
            "warren_jobs_total", help: "Jobs finished, by task and outcome.",
            [
                (labels: ["task": "email.send", "outcome": "succeeded"], value: 42),
                (labels: ["task": "email.send", "outcome": "dead"], value: 1),
            ])
        metrics.gauge(
            "warren_queue_messages", help: "Messages ready.",
            [(labels: ["queue": "warren.email"], value: 7.5), (labels: [:], value: -2)])
        #expect(
            metrics.text == """
                # HELP warren_jobs_total Jobs finished, by task and outcome.
                # TYPE warren_jobs_total counter
                warren_jobs_total{outcome="succeeded",task="email.send"} 42
                warren_jobs_total{outcome="dead",task="email.send"} 1
                # HELP warren_queue_messages Messages ready.
                # TYPE warren_queue_messages gauge
                warren_queue_messages{queue="warren.email"} 7.5
                warren_queue_messages -2

                """)
    }

    @Test func histogramBucketsAreCumulativeAndEndInInf() {
        var metrics = PrometheusText()
        metrics.histogram(
            "warren_job_duration_seconds", help: "Handler run time.", buckets: [0.05, 1, 10],
            [
                (labels: ["task": "a"], counts: [3, 2, 0], sum: 2.25, count: 6),
                (labels: ["task": "b"], counts: [0, 0, 0], sum: 0, count: 0),
            ])
        #expect(
            metrics.text == """
                # HELP warren_job_duration_seconds Handler run time.
                # TYPE warren_job_duration_seconds histogram
                warren_job_duration_seconds_bucket{task="a",le="0.05"} 3
                warren_job_duration_seconds_bucket{task="a",le="1"} 5
                warren_job_duration_seconds_bucket{task="a",le="10"} 5
                warren_job_duration_seconds_bucket{task="a",le="+Inf"} 6
                warren_job_duration_seconds_sum{task="a"} 2.25
                warren_job_duration_seconds_count{task="a"} 6
                warren_job_duration_seconds_bucket{task="b",le="0.05"} 0
                warren_job_duration_seconds_bucket{task="b",le="1"} 0
                warren_job_duration_seconds_bucket{task="b",le="10"} 0
                warren_job_duration_seconds_bucket{task="b",le="+Inf"} 0
                warren_job_duration_seconds_sum{task="b"} 0
                warren_job_duration_seconds_count{task="b"} 0

                """)
    }

    @Test func labelValuesAndHelpAreEscaped() {
        var metrics = PrometheusText()
        metrics.gauge(
            "odd", help: "A \\ backslash\nand a newline",
            [(labels: ["path": "C:\\dir \"quoted\"\nnext", "plain": "é ✓"], value: 1)])
        #expect(
            metrics.text == #"""
                # HELP odd A \\ backslash\nand a newline
                # TYPE odd gauge
                odd{path="C:\\dir \"quoted\"\nnext",plain="é ✓"} 1

                """#)
    }

    @Test func addingToAMetricAgainKeepsOneGroupWithOneHelpLine() {
        var metrics = PrometheusText()
        metrics.counter("a_total", help: "A.", [(labels: ["k": "1"], value: 1)])
        metrics.gauge("b", help: "B.", [(labels: [:], value: 2)])
        metrics.counter("a_total", help: "A.", [(labels: ["k": "2"], value: 3)])
        #expect(
            metrics.text == """
                # HELP a_total A.
                # TYPE a_total counter
                a_total{k="1"} 1
                a_total{k="2"} 3
                # HELP b B.
                # TYPE b gauge
                b 2

                """)
        #expect(PrometheusText().text.isEmpty)
    }

    @Test(arguments: [
        (1.0, "1"), (0.25, "0.25"), (-3.0, "-3"), (-0.0, "0"), (1e-5, "1e-05"), (1e20, "1e+20"),
        (Double.infinity, "+Inf"), (-Double.infinity, "-Inf"), (Double.nan, "NaN"), (123_456_789.0, "123456789"),
    ])
    func valuesAreFormattedAsPrometheusReadsThem(value: Double, text: String) throws {
        #expect(PrometheusText.format(value) == text)
        let parsed = try PrometheusText.parse("m \(text)")
        #expect(parsed.count == 1)
        #expect(parsed[0].value == value || (value.isNaN && parsed[0].value.isNaN))
    }

    @Test func namesAreValidatedByTheirGrammar() {
        for valid in ["a", "_a", "a:b", ":a", "warren_jobs_total", "A9"] {
            #expect(PrometheusText.isValidMetricName(valid), "\(valid)")
        }
        for invalid in ["", "9a", "a-b", "a b", "é", "a.b"] {
            #expect(!PrometheusText.isValidMetricName(invalid), "\(invalid)")
        }
        for valid in ["a", "_a", "le", "A_9"] { #expect(PrometheusText.isValidLabelName(valid), "\(valid)") }
        for invalid in ["", "9a", "a:b", "a-b", "a.b"] {
            #expect(!PrometheusText.isValidLabelName(invalid), "\(invalid)")
        }
    }

    @Test func anInvalidMetricNameIsAPreconditionFailure() async {
        await #expect(processExitsWith: .failure) {
            var metrics = PrometheusText()
            metrics.counter("jobs-total", help: "", [(labels: [:], value: 1)])
        }
        await #expect(processExitsWith: .failure) {
            var metrics = PrometheusText()
            metrics.gauge("jobs", help: "", [(labels: ["queue.name": "q"], value: 1)])
        }
        await #expect(processExitsWith: .failure) {
            var metrics = PrometheusText()
            metrics.histogram("h", help: "", buckets: [1, 2], [(labels: [:], counts: [1], sum: 1, count: 1)])
        }
    }

    @Test func parseReadsBackWhatWasFormatted() throws {
        var metrics = PrometheusText()
        let awkward = "back\\slash \"quote\"\nnewline, comma} brace=equals"
        metrics.counter(
            "warren_jobs_total", help: "Jobs.",
            [(labels: ["task": awkward, "outcome": "ok"], value: 3), (labels: [:], value: 0.125)])
        metrics.gauge("warren_up", help: "Up.", [(labels: ["q": ""], value: -.infinity)])
        metrics.histogram(
            "warren_seconds", help: "Durations.", buckets: [0.5],
            [(labels: ["task": "t"], counts: [1], sum: 0.75, count: 2)])
        #expect(
            try PrometheusText.parse(metrics.text) == [
                PrometheusSample(name: "warren_jobs_total", labels: ["task": awkward, "outcome": "ok"], value: 3),
                PrometheusSample(name: "warren_jobs_total", value: 0.125),
                PrometheusSample(name: "warren_up", labels: ["q": ""], value: -.infinity),
                PrometheusSample(name: "warren_seconds_bucket", labels: ["task": "t", "le": "0.5"], value: 1),
                PrometheusSample(name: "warren_seconds_bucket", labels: ["task": "t", "le": "+Inf"], value: 2),
                PrometheusSample(name: "warren_seconds_sum", labels: ["task": "t"], value: 0.75),
                PrometheusSample(name: "warren_seconds_count", labels: ["task": "t"], value: 2),
            ])
    }

    @Test func parseAcceptsWhatOtherExportersWrite() throws {
        let text = """
            # HELP rabbitmq_queue_messages Sum of ready and unacknowledged messages
            # TYPE rabbitmq_queue_messages gauge
            rabbitmq_queue_messages{vhost="/",queue="warren.email",} 12 1700000000000\r

              \t
            # a free comment
            go_gc_duration_seconds{ quantile = "0.5" } 1.5e-05
            process_start_time_seconds\t1.7e+09
            nan_metric NaN
            """
        let samples = try PrometheusText.parse(text)
        #expect(
            Array(samples.dropLast()) == [
                PrometheusSample(
                    name: "rabbitmq_queue_messages", labels: ["vhost": "/", "queue": "warren.email"], value: 12),
                PrometheusSample(name: "go_gc_duration_seconds", labels: ["quantile": "0.5"], value: 1.5e-05),
                PrometheusSample(name: "process_start_time_seconds", value: 1.7e9),
            ])
        #expect(samples.last?.name == "nan_metric" && samples.last?.value.isNaN == true)
    }

    @Test(arguments: [
        ("ok 1\nbad{a=\"x} 1", 2, "unterminated label value"),
        ("m{1a=\"x\"} 1", 1, "expected a label name at column 3"),
        ("m{a\"x\"} 1", 1, "expected = after label name a"),
        ("m{a=x} 1", 1, "expected \" after a="),
        ("m{a=\"x\" b=\"y\"} 1", 1, "expected , or } after the value of label a"),
        ("m{a=\"\\q\"} 1", 1, "invalid escape in a label value at column 6"),
        ("m{a=\"1\",a=\"2\"} 1", 1, "label a appears twice in m"),
        ("m", 1, "expected a value after m"),
        ("m{a=\"x\"}", 1, "expected a value after m"),
        ("m one", 1, "\"one\" is not a number"),
        ("m 1 later", 1, "\"later\" is not a timestamp"),
        ("m 1 2 3", 1, "unexpected text after the timestamp of m"),
        ("# fine\n\n9m 1", 3, "expected a metric name at column 1"),
    ])
    func parseNamesTheLineAndTheProblem(text: String, line: Int, message: String) {
        #expect(throws: PrometheusText.ParseError(line: line, message: message)) {
            try PrometheusText.parse(text)
        }
    }
}

// `lockstep report`: Markdown tables from bench JSON reports, and plots through
// tools/plot_bench.py (SVG, Python standard library only).

import ArgumentParser
import Foundation

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn `lockstep bench` JSON reports (files or folders) into Markdown tables and SVG plots.")

    @Argument(help: "Report files, or folders of them.")
    var paths: [String] = ["bench-results"]

    @Option(help: "Folder for throughput.svg and latency.svg (none: no plots).")
    var plots: String?

    @Option(help: "The plotting script.")
    var plotScript: String = "tools/plot_bench.py"

    func run() throws {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw ValidationError("no such file or folder: \(path)")
            }
            if isDirectory.boolValue {
                let names = try FileManager.default.contentsOfDirectory(atPath: path)
                    .filter { $0.hasSuffix(".json") }.sorted()
                files += names.map { "\(path)/\($0)" }
            } else {
                files.append(path)
            }
        }
        guard !files.isEmpty else { throw ValidationError("no .json reports in \(paths.joined(separator: ", "))") }
        var readable: [String] = []
        for file in files {
            do {
                let data = try Data(contentsOf: URL(fileURLWithPath: file))
                let report = try JSONLines.decoder().decode(BenchReport.self, from: data)
                Output.line("### \(URL(fileURLWithPath: file).lastPathComponent)")
                Output.line("")
                Output.line(report.table(markdown: true))
                Output.line("")
                readable.append(file)
            } catch {
                Output.error("skipping \(file): not a lockstep-bench/1 report (\(error))")
            }
        }
        guard let plots else { return }
        guard !readable.isEmpty else { throw ValidationError("no readable reports to plot") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", plotScript, "--out", plots] + readable
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("\(plotScript) failed (status \(process.terminationStatus)); is python3 installed?")
        }
    }
}

// CPU and memory figures of this process, as node's progress and final lines report them.

import Foundation

/// Peak resident memory of this process image, MB (10^6 bytes), from VmHWM in /proc/self/status.
/// Not getrusage's ru_maxrss: that one keeps the peak of the parent process a child was forked
/// from (the peak survives exec), which reported the bench parent's memory as the members'.
func peakResidentMegabytes() -> Double { statusMegabytes("VmHWM:") }

/// Resident memory of this process now, MB.
func residentMegabytes() -> Double { statusMegabytes("VmRSS:") }

private func statusMegabytes(_ field: String) -> Double {
    // No /proc (not Linux): the figure is 0, which the reports print as is; nothing else depends on it.
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix(field) {
        let kilobytes = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        return kilobytes * 1_024 / 1e6
    }
    return 0
}

/// User and system CPU time of this process so far, seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

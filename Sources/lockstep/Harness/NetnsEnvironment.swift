// bench --netns: the network namespaces tools/with-netns made for the run.

import Foundation

/// The network namespaces `tools/with-netns` made for this run, from its environment variables:
/// member k runs in `prefix + k` at `addresses[k]`; the link's iperf3 rate and round trip were
/// measured through the same shaping just before.
struct NetnsEnvironment {
    /// The port every member listens on in its own namespace.
    static let memberPort = 7_000

    var prefix: String
    var addresses: [String]
    var rate: String
    var linkMegabytesPerSecond: Double?
    var rttMilliseconds: Double?

    static var current: NetnsEnvironment? {
        let environment = ProcessInfo.processInfo.environment
        guard let prefix = environment["LOCKSTEP_NETNS_PREFIX"], !prefix.isEmpty,
            let addresses = environment["LOCKSTEP_NETNS_ADDRESSES"]?.split(separator: ",").map(String.init),
            !addresses.isEmpty
        else { return nil }
        return NetnsEnvironment(
            prefix: prefix, addresses: addresses, rate: environment["LOCKSTEP_NETNS_RATE"] ?? "?",
            linkMegabytesPerSecond: environment["LOCKSTEP_NETNS_LINK_MBPS"].flatMap(Double.init),
            rttMilliseconds: environment["LOCKSTEP_NETNS_RTT_MS"].flatMap(Double.init))
    }
}

// The hook for an application from outside the simulator (LockstepTesting's LocalGroup runs the
// user's state machine through it). The default application (`AppState`, random payloads) keeps
// running underneath whether or not a hook is set: an outside payload travels behind the same
// 16-byte sender and sequence header (`ApplicationPayload`), so the delivery logs, the state
// digests and so the checker see it exactly as they see the default payloads. The hook is told
// what its process's member delivers and installs, synchronously, at the virtual instant it
// happens, and provides and restores a joiner's snapshot at the welcome: one seed still fixes
// the run (the hook draws nothing from the group's random source).

import LockstepCore

/// An application of the simulated processes, besides the default one. Every call is made at
/// the virtual instant its event happens, for the incarnation `member` in `process`.
public protocol SimulatedApplicationHook: AnyObject {
    /// The member delivered a message sent with `submit(_:from:)`; `delivery.payload` is the
    /// outside application's bytes (the simulator's header is taken off).
    func delivered(_ delivery: Delivery, at process: Int, member: MemberID)
    /// The member installed `view` (after the last delivery of the view before it).
    func installed(_ view: View, memberRank: Int, at process: Int, member: MemberID)
    /// The state a joiner starts from, taken now (after the view's last delivery here).
    func snapshot(at process: Int, member: MemberID) -> [UInt8]
    /// The joiner `member` starts from `snapshot`, before it delivers anything.
    func restore(_ snapshot: [UInt8], at process: Int, member: MemberID)
}

extension SimulatedGroup {
    /// The application in `process` sends `body` (behind the simulator's header, in order with
    /// its other sends). It waits in the application's queue while the window is full or the
    /// member is between views or paused; a crash, a removal or a restart loses it.
    public func submit(_ body: [UInt8], from process: Int) {
        processes[process].outbox.append(body)
        // An empty burst: the member submits the queue the next time it runs (now, or when a
        // pause ends), and the run is not quiet until it has.
        send(from: process, count: 0)
    }

    /// Messages the application in `process` queued with `submit(_:from:)` and not sent yet.
    public func outboxCount(_ process: Int) -> Int { processes[process].outbox.count }
}

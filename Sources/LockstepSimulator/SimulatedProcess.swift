// A simulated process: it holds one member incarnation at a time (a restart gives the process
// a new `MemberID`, which joins as a new member). Processes are what tests and the fault
// schedule name, by index; ranks are the core's business and change with every view.

import LockstepChecker
import LockstepCore

extension SimulatedGroup {
    public enum Status: Sendable, Equatable {
        /// Not started yet (a spare process for a later joiner).
        case dormant
        /// Asked to join; no view yet.
        case joining
        case active
        /// Learned it was removed; it does nothing more.
        case removed
        case crashed
    }
}

/// What one incarnation sent, delivered and installed, kept after the incarnation is gone: the
/// checker reads every incarnation, not only the current ones.
struct History {
    var sent: [SentRecord] = []
    var delivered: [DeliveredRecord] = []
    var installs: [ViewRecord] = []
    var initialState: AppState? = nil
    var removed = false
}

/// A class so that reading a process's core through the group's array does not copy the core.
final class SimulatedProcess {
    var id: MemberID
    var status: SimulatedGroup.Status
    var core: OrderingCore?
    var app = AppState()
    var backlog = 0
    var nextSenderSequence: UInt64 = 0
    var pausedUntil: UInt64? = nil
    /// What arrived while paused, handled in arrival order on resume.
    var deferred: [SimulatedEvent] = []
    /// Traffic of a view not installed yet: (sender, message), in arrival order.
    var future: [(MemberID, Message)] = []
    /// When the member wedged in its current view, and how many messages it had submitted then.
    var wedgedAt: UInt64? = nil
    var everWedged = false
    var sentWhenWedged = 0
    var minority = false
    var joinAskedAt: UInt64 = 0
    /// (member, view) pairs this process sent its last row of that view to.
    var answeredStragglers: Set<[UInt64]> = []

    init(id: MemberID, status: SimulatedGroup.Status, core: OrderingCore?) {
        self.id = id
        self.status = status
        self.core = core
    }

    /// Active or joining: it handles what reaches it.
    var isLive: Bool { status == .active || status == .joining }
}

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
    /// The member shell (the same `Member` the runtime drives), once the incarnation has a view.
    var member: Member<Message>?
    /// The core of the current view (read-only: every event goes through `member`).
    var core: OrderingCore? { member?.core }
    var app = AppState()
    var backlog = 0
    /// What an outside application asked to send (`submit(_:from:)`), sent before the backlog.
    var outbox: [[UInt8]] = []
    var nextSenderSequence: UInt64 = 0
    var pausedUntil: UInt64? = nil
    /// What arrived while paused, handled in arrival order on resume.
    var deferred: [SimulatedEvent] = []
    /// A joiner's traffic before its welcome: (sender, message), in arrival order (a runtime's
    /// members hold it for a joiner that has not connected; here the joiner holds it).
    var beforeWelcome: [(MemberID, Message)] = []
    /// Members this process does not read from for now (`MemberEffect.pauseReading`), and what
    /// arrived from them meanwhile, in arrival order.
    var readingPaused: Set<MemberID> = []
    var unread: [SimulatedEvent] = []
    /// A poll is scheduled (events until then are handled without one, as in a read burst).
    var pollScheduled = false
    /// This process's clock: `offset + rate x virtual time` (clock skew), in nanoseconds.
    var clockOffset: Int64 = 0
    var clockRate = 1.0
    /// The application asked to leave: a removal is what it wanted (no rejoin).
    var left = false
    /// The process this joiner last asked (it waits on that member's welcome).
    var joinContact: Int?
    /// Join attempts of this incarnation (it asks another contact before starting afresh).
    var joinAttempts = 0
    /// When the member wedged in its current view, and how many messages it had submitted then.
    var wedgedAt: UInt64? = nil
    var everWedged = false
    var sentWhenWedged = 0
    var minority = false
    var joinAskedAt: UInt64 = 0
    /// Durable mode: this incarnation's simulated disk (SimulatedGroup+Durable.swift).
    var disk: SimulatedDisk?

    init(id: MemberID, status: SimulatedGroup.Status, member: Member<Message>?) {
        self.id = id
        self.status = status
        self.member = member
    }

    /// Active or joining: it handles what reaches it.
    var isLive: Bool { status == .active || status == .joining }
}

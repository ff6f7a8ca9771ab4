// The names an embedding program needs from the modules under Lockstep, so that `import Lockstep`
// is enough (typealiases rather than re-exporting whole modules: the API stays what this module
// says it is).

import LockstepCore
import LockstepRuntime

public typealias MemberID = LockstepCore.MemberID
public typealias ViewID = LockstepCore.ViewID
public typealias PeerAddress = LockstepRuntime.PeerAddress
public typealias TransportKind = LockstepRuntime.TransportKind
/// The protocol's limits and timeouts (`GroupConfiguration.protocolConfiguration`).
public typealias ProtocolConfiguration = LockstepCore.Configuration
public typealias DeliveryMode = LockstepCore.DeliveryMode
/// A raw command (`Command == Payload` takes the raw path: no encoding).
public typealias Payload = LockstepCore.Payload

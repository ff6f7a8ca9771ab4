// Where the other members of this member's view listen: what a member removed from the group
// (a long pause, a false suspicion) takes as its contacts when it rejoins as a new incarnation
// (`MemberRuntime.requestJoin(contacts:)`). Outside `Member/` on purpose: it only reads.

extension MemberRuntime {
    /// The listening addresses of the other members of the current view (the last one installed,
    /// for a member that was removed), in rank order; members whose address this member never
    /// learned are left out.
    ///
    ///     let contacts = try await runtime.otherMemberAddresses()
    public func otherMemberAddresses() async throws -> [PeerAddress] {
        try await eventLoop.submit {
            self.shell.core.view.members.filter { $0 != self.me }.compactMap { self.addresses[$0] }
        }.get()
    }
}

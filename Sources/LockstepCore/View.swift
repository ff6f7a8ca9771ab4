// A view: one numbered membership epoch. Members are listed in rank order (rank = position);
// some of them are senders. The total order is round-robin over the senders in rank order:
// message `i` of the sender at sender rank `r` (its position among the senders) has global
// sequence `i * S + r`, where `S` is the number of senders.

/// A membership epoch: who is in the group, in rank order, and who of them sends.
public struct View: Sendable, Equatable, CustomStringConvertible {
    public let id: ViewID
    /// Members in rank order: `members[rank]`.
    public let members: [MemberID]
    /// Member ranks of the senders, ascending. The position in this array is the sender rank.
    public let senderMemberRanks: [Int]

    /// Creates a view, checking that it is well formed.
    /// - Parameter senders: the members that send; `nil` means every member sends.
    public init(id: ViewID, members: [MemberID], senders: [MemberID]? = nil) throws(ViewError) {
        guard !members.isEmpty else { throw ViewError(reason: "a view needs at least one member") }
        guard Set(members).count == members.count else {
            throw ViewError(reason: "a member appears twice in \(members)")
        }
        let senderSet = Set(senders ?? members)
        guard senderSet.isSubset(of: Set(members)) else {
            throw ViewError(reason: "senders \(senders ?? []) are not all members of \(members)")
        }
        guard !senderSet.isEmpty else { throw ViewError(reason: "a view needs at least one sender") }
        self.id = id
        self.members = members
        self.senderMemberRanks = members.indices.filter { senderSet.contains(members[$0]) }
    }

    public var memberCount: Int { members.count }
    public var senderCount: Int { senderMemberRanks.count }

    /// The rank of `member` in this view, if it is a member.
    public func rank(of member: MemberID) -> Int? { members.firstIndex(of: member) }

    /// The sender rank of the member at `memberRank`, if that member sends.
    public func senderRank(ofMemberRank memberRank: Int) -> Int? {
        senderMemberRanks.firstIndex(of: memberRank)
    }

    public var description: String {
        let senderIDs = senderMemberRanks.map { members[$0].description }
        return "\(id) members=\(members) senders=[\(senderIDs.joined(separator: ", "))]"
    }
}

/// A view was malformed.
public struct ViewError: Error, Equatable, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { "invalid view: \(reason)" }
}

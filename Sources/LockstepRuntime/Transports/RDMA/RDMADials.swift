// Dials and rdma_cm: connecting to peers (retried per DialSchedule), accepting, and the
// connection manager's events.

import CLockstepVerbs
import Foundation
import LockstepCore
import LockstepWire
import Logging
import NIOCore
import Synchronization

extension RDMAPoller {
    func startDial(_ dial: RDMADial) {
        let address = settings.addresses[dial.rank]
        var error = [CChar](repeating: 0, count: Self.errorTextBytes)
        guard let conn = lsv_connect(fabric, address.host, Int32(address.port), &error, error.count) else {
            let reason = "cannot dial \(settings.describePeer(rank: dial.rank)) over RDMA: \(cText(error))"
            dial.waiter.resume(throwing: RuntimeError(.connectFailed, reason))
            return
        }
        let link = RDMALink(connectionID: lsv_conn_id(conn), poller: self, member: settings.view.members[dial.rank])
        let connection = RDMAConnection(conn: conn, link: link)
        connection.dialedRank = dial.rank
        connections[connection.id] = connection
        var attempt = dial
        attempt.at = .now
        dials[connection.id] = attempt
    }

    /// A dial failed (`reason`): tried again per its schedule, or given up past its deadline.
    func dialFailed(_ id: UInt32, conn: OpaquePointer, reason: String) {
        connections.removeValue(forKey: id)
        lsv_conn_close(conn)
        guard var dial = dials.removeValue(forKey: id) else { return }
        do {
            dial.at = try dial.schedule.nextAttempt(
                to: "\(settings.describePeer(rank: dial.rank)) over RDMA", after: reason)
            redials.append(dial)
        } catch {
            dial.waiter.resume(throwing: error)
        }
    }

    func runConnectionManager() -> Bool {
        var worked = false
        var result = lsv_cm_result()
        while lsv_cm_poll(fabric, &result) == 0, result.kind != LSV_CM_NONE {
            worked = true
            let reason = withUnsafeBytes(of: result.reason) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            logger.debug(
                "rdma_cm: kind \(result.kind) connection \(result.conn.map { lsv_conn_id($0) } ?? 0) \(reason)")
            switch Int(result.kind) {
            case LSV_CM_ESTABLISHED:
                guard let conn = result.conn else { continue }
                let id = lsv_conn_id(conn)
                guard let connection = connections[id] else { continue }
                connection.established = true
                if connection.dialedRank != nil { connection.link.memory = connection.memory }
                if let dial = dials.removeValue(forKey: id) {
                    sendHello(on: connection)
                    events.append(.up(connection.link, member: settings.view.members[dial.rank]))
                    dial.waiter.resume()
                }
                for arrival in connection.early { events.append(.arrived(connection.link, arrival)) }
                connection.early.removeAll()
            case LSV_CM_INCOMING:
                // Accepted: the peer may write at once; its hello (its first frame) says who it is.
                guard let conn = result.conn else { continue }
                let link = RDMALink(connectionID: lsv_conn_id(conn), poller: self, member: nil)
                let connection = RDMAConnection(conn: conn, link: link)
                link.memory = connection.memory
                connections[connection.id] = connection
            case LSV_CM_FAILED:
                guard let conn = result.conn else { continue }
                dialFailed(lsv_conn_id(conn), conn: conn, reason: reason)
            case LSV_CM_DISCONNECTED:
                guard let conn = result.conn, let connection = connections.removeValue(forKey: lsv_conn_id(conn)) else {
                    continue
                }
                bury(connection)
                events.append(.down(connection.link))
            case LSV_CM_REFUSED:
                logger.warning("refused an RDMA connection: \(reason)")
            default:
                break
            }
        }
        return worked
    }

    func sendHello(on connection: RDMAConnection) {
        connection.pending.prepend(Hello(from: settings).encoded(allocator: allocator))
        connection.helloPending = true
    }
}

//! A node's ports, taken before its shards recover.
//!
//! `ringflow serve` binds every shard's port in the main thread first, before any journal
//! is opened: a port that is taken stops the node with the port named before it recovers,
//! not after. The sockets are bound but not listening, so a client that connects
//! during recovery is refused (and retries) rather than left waiting on a shard that does
//! not answer yet; each shard calls listen(2) on its own socket once it serves.
//!
//! A port taken by a listening socket is refused at bind, after trying again for
//! [`IN_USE_WAIT_MS`] (a killed server's sockets outlive its process briefly). Two servers
//! that bind the same port before either listens (both starting at once) both get it, as
//! SO_REUSEADDR allows; listen(2) then refuses the second, which stops with the same message
//! after recovering.
//!
//! The sockets do not set SO_REUSEPORT (glommio's own `TcpListener::bind` does): with it,
//! a second server started on the same port would bind it too, and the kernel would spread
//! new connections between the two processes, so a client could deploy to one server and
//! create instances on the other. Without it, the second server is refused with the port
//! named. SO_REUSEADDR is set, as std does, so a restarted server can bind its port while
//! the old connections are in TIME_WAIT.
//!
//! Port 0 (`--listen 127.0.0.1:0`, a single node) asks for free ports: the node takes a
//! block of consecutive free ports (shard i listens on base + i, as the topology says) and
//! reports them on stderr (`ringflow: node 0 of 1 ... on HOST:BASE..=LAST`, and each shard's
//! `ringflow: shard S listening on HOST:PORT`).

use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// The backlog of each shard's listening socket: connections the kernel completes before
/// the shard accepts them.
pub const LISTEN_BACKLOG: i32 = 1024;

/// How long a node waits for a named port that is in use before it gives up. A server that
/// was killed keeps its listening sockets for a moment after its process is gone (the
/// kernel closes its io_uring, which holds them, afterwards), so a restart right after a
/// crash finds its ports in use.
pub const IN_USE_WAIT_MS: u64 = 5_000;

/// How often a port in use is tried again within [`IN_USE_WAIT_MS`].
pub const IN_USE_RETRY_MS: u64 = 20;

/// Attempts at finding a block of consecutive free ports for port 0.
pub const PORT_PICK_ATTEMPTS: usize = 100;

/// A node's bound (not yet listening) sockets: shard `first_shard + i` takes `sockets[i]`.
#[derive(Debug)]
pub struct BoundPorts {
    /// The port of the node's first shard.
    pub base_port: u16,
    /// One per shard of the node, in order.
    pub sockets: Vec<Socket>,
}

/// Binds `count` consecutive ports from `base_port` on `host`; `base_port` 0 picks a free
/// block. A named port in use is tried again for [`IN_USE_WAIT_MS`].
pub fn bind_ports(host: &str, base_port: u16, count: u16) -> Result<BoundPorts, String> {
    let wait = Duration::from_millis(IN_USE_WAIT_MS);
    if count == 0 {
        return Err("a node needs at least one shard to listen".into());
    }
    if base_port != 0 {
        let started = Instant::now();
        let mut said = false;
        loop {
            match bind_block(host, base_port, count) {
                Ok(bound) => return Ok(bound),
                Err(failure) if failure.in_use && started.elapsed() < wait => {
                    if !said {
                        say!(
                            "ringflow: {} is in use; waiting up to {} ms for it (a stopped \
                             server's sockets close shortly after it exits)",
                            failure.addr,
                            wait.as_millis()
                        );
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(IN_USE_RETRY_MS));
                }
                Err(failure) => return Err(failure.message),
            }
        }
    }
    let mut last = String::new();
    for _ in 0..PORT_PICK_ATTEMPTS {
        let first = bind_one(host, 0).map_err(|failure| failure.message)?;
        let picked = first
            .local_addr()
            .ok()
            .and_then(|addr| addr.as_socket())
            .map(|addr| addr.port())
            .ok_or_else(|| format!("cannot listen on {host}:0: no port was given"))?;
        if u32::from(picked) + u32::from(count) - 1 > 65535 {
            continue;
        }
        let mut sockets = vec![first];
        let mut taken = None;
        for index in 1..count {
            match bind_one(host, picked + index) {
                Ok(socket) => sockets.push(socket),
                Err(failure) if failure.in_use => {
                    taken = Some(failure.message);
                    break;
                }
                Err(failure) => return Err(failure.message),
            }
        }
        match taken {
            None => {
                return Ok(BoundPorts {
                    base_port: picked,
                    sockets,
                });
            }
            Some(message) => last = message,
        }
    }
    Err(format!(
        "cannot find {count} consecutive free ports on {host} in {PORT_PICK_ATTEMPTS} \
         attempts (the last: {last}); name a base port with --listen"
    ))
}

/// Starts listening on a socket from [`bind_ports`] (`addr` names it in errors).
pub fn listen(socket: &Socket, addr: &str) -> Result<(), String> {
    socket.listen(LISTEN_BACKLOG).map_err(|error| {
        if error.kind() == ErrorKind::AddrInUse {
            format!("cannot listen on {addr}: {IN_USE}")
        } else {
            format!("cannot listen on {addr}: {error}")
        }
    })
}

const IN_USE: &str = "the port is in use by another process (another ringflow serve?); stop \
                      it, or pick another base port with --listen (port 0 picks free ones)";

/// Why one port could not be bound.
struct BindFailure {
    /// `host:port`.
    addr: String,
    message: String,
    /// Another socket has the port.
    in_use: bool,
}

fn bind_block(host: &str, base_port: u16, count: u16) -> Result<BoundPorts, BindFailure> {
    let mut sockets = Vec::with_capacity(usize::from(count));
    for index in 0..count {
        let port = base_port.checked_add(index).ok_or_else(|| BindFailure {
            addr: shown(host, base_port),
            message: format!("base port {base_port} + shard {index} is past port 65535"),
            in_use: false,
        })?;
        sockets.push(bind_one(host, port)?);
    }
    Ok(BoundPorts { base_port, sockets })
}

fn bind_one(host: &str, port: u16) -> Result<Socket, BindFailure> {
    let fail = |why: String, in_use: bool| BindFailure {
        addr: shown(host, port),
        message: format!("cannot listen on {}: {why}", shown(host, port)),
        in_use,
    };
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()
        .map_err(|error| fail(error.to_string(), false))?
        .next()
        .ok_or_else(|| fail("the host has no address".into(), false))?;
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
        .map_err(|error| fail(format!("cannot make a socket: {error}"), false))?;
    socket
        .set_reuse_address(true)
        .map_err(|error| fail(format!("SO_REUSEADDR: {error}"), false))?;
    socket.bind(&addr.into()).map_err(|error| {
        if error.kind() == ErrorKind::AddrInUse {
            fail(IN_USE.into(), true)
        } else {
            fail(error.to_string(), false)
        }
    })?;
    Ok(socket)
}

/// `host:port`, with an IPv6 host in brackets.
pub(crate) fn shown(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port_of(socket: &Socket) -> u16 {
        socket.local_addr().unwrap().as_socket().unwrap().port()
    }

    #[test]
    fn port_zero_gives_consecutive_ports() {
        let bound = bind_ports("127.0.0.1", 0, 3).unwrap();
        assert_ne!(bound.base_port, 0);
        let ports: Vec<u16> = bound.sockets.iter().map(port_of).collect();
        assert_eq!(
            ports,
            vec![bound.base_port, bound.base_port + 1, bound.base_port + 2]
        );
    }

    #[test]
    fn a_taken_port_is_refused_with_the_port_named() {
        let first = bind_ports("127.0.0.1", 0, 2).unwrap();
        for socket in &first.sockets {
            listen(socket, "127.0.0.1:any").unwrap();
        }
        // The second shard's port of a node that would start one below the first.
        let error = bind_ports("127.0.0.1", first.base_port + 1, 1).unwrap_err();
        assert!(
            error.contains(&format!("127.0.0.1:{}", first.base_port + 1))
                && error.contains("in use"),
            "{error}"
        );
        // A std listener on the same port is refused too (no SO_REUSEPORT to share it).
        assert!(std::net::TcpListener::bind(("127.0.0.1", first.base_port)).is_err());
    }

    #[test]
    fn of_two_sockets_bound_before_either_listens_the_second_to_listen_is_refused() {
        // SO_REUSEADDR lets both bind while neither listens (two servers starting at once);
        // listen(2) then refuses the second, so they never share the port.
        let first = bind_ports("127.0.0.1", 0, 1).unwrap();
        let second = bind_ports("127.0.0.1", first.base_port, 1).unwrap();
        listen(&first.sockets[0], "first").unwrap();
        let error = listen(&second.sockets[0], "127.0.0.1:second").unwrap_err();
        assert!(
            error.contains("cannot listen on 127.0.0.1:second") && error.contains("in use"),
            "{error}"
        );
    }

    #[test]
    fn a_bound_socket_refuses_connections_until_it_listens() {
        let bound = bind_ports("127.0.0.1", 0, 1).unwrap();
        let addr = ("127.0.0.1", bound.base_port);
        assert!(std::net::TcpStream::connect(addr).is_err());
        listen(&bound.sockets[0], "it").unwrap();
        assert!(std::net::TcpStream::connect(addr).is_ok());
    }

    #[test]
    fn bad_hosts_and_ports_are_named() {
        let error = bind_ports("127.0.0.1", 65535, 2).unwrap_err();
        assert!(error.contains("past port 65535"), "{error}");
        // An address this machine does not have.
        let error = bind_ports("192.0.2.1", 7000, 1).unwrap_err();
        assert!(error.contains("192.0.2.1:7000"), "{error}");
        assert_eq!(
            bind_ports("127.0.0.1", 0, 0).unwrap_err(),
            "a node needs at least one shard to listen"
        );
        assert_eq!(shown("::1", 1), "[::1]:1");
    }
}

//! Listening sockets with SO_REUSEPORT, so a new process can bind the same port while the old
//! one drains (zero-downtime restart; see README).

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::OriginError;

/// Binds `addr` with SO_REUSEADDR and SO_REUSEPORT and a deep accept backlog.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, OriginError> {
    let err = |context: &str| {
        let context = format!("{context} {addr}");
        move |source| OriginError::Io { context, source }
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(err("socket for"))?;
    socket
        .set_reuse_address(true)
        .map_err(err("SO_REUSEADDR on"))?;
    socket
        .set_reuse_port(true)
        .map_err(err("SO_REUSEPORT on"))?;
    socket.set_nodelay(true).map_err(err("TCP_NODELAY on"))?;
    socket.bind(&addr.into()).map_err(err("bind"))?;
    socket.listen(4096).map_err(err("listen on"))?;
    socket.set_nonblocking(true).map_err(err("nonblocking"))?;
    Ok(socket.into())
}

//! A port already in use: which address, and — where `/proc` shows it —
//! which process holds it, so a second agent started on a taken port
//! fails at once with something a person can act on.

use std::net::SocketAddr;

/// A process that has a socket open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its name (`/proc/<pid>/comm`).
    pub name: String,
}

/// The error for `what` (e.g. "API") at `addr` already in use: the
/// address, the process that listens on the port where it can be found,
/// and the flag that picks another address.
pub fn in_use(what: &str, addr: SocketAddr, flag: &str) -> anyhow::Error {
    let by = match listener_of(addr.port()) {
        Some(h) => format!(" by process {} ({})", h.pid, h.name),
        None => String::new(),
    };
    anyhow::anyhow!(
        "{what} port {} is already in use{by} (address {addr}): stop that process or give another port with {flag}",
        addr.port()
    )
}

/// Checks that `addr` (TCP) can be listened on now; [`in_use`] when it
/// cannot for that reason, the system's error otherwise.
pub fn check_free(what: &str, addr: SocketAddr, flag: &str) -> anyhow::Result<()> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(in_use(what, addr, flag)),
        Err(e) => Err(anyhow::anyhow!("cannot listen on {addr} ({what}, {flag}): {e}")),
    }
}

/// The process listening on TCP `port` (any address, IPv4 or IPv6), if
/// `/proc` shows one this process may look at.
pub fn listener_of(port: u16) -> Option<Holder> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| listening_inodes(&t, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| wanted.iter().any(|w| l.as_os_str() == w.as_str())));
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_string();
            return Some(Holder { pid, name });
        }
    }
    None
}

/// Socket inodes of the listening sockets on `port` in the text of
/// `/proc/net/tcp` or `/proc/net/tcp6`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let local_port = f.get(1)?.rsplit(':').next()?;
            let p = u16::from_str_radix(local_port, 16).ok()?;
            (p == port && *f.get(3)? == LISTEN).then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_found_by_port_in_the_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1CE8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1CE8 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1CE9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";
        // 0x1CE8 = 7400: the listening socket, not the connection.
        assert_eq!(listening_inodes(table, 7400), vec![4242]);
        assert_eq!(listening_inodes(table, 7401), vec![4444]);
        assert!(listening_inodes(table, 7402).is_empty());
    }

    #[test]
    fn this_process_is_found_holding_its_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = listener_of(addr.port()).expect("our own listener is in /proc");
        assert_eq!(h.pid, std::process::id());
        let e = check_free("API", addr, "--api").unwrap_err().to_string();
        assert!(e.contains(&format!("API port {} is already in use by process {}", addr.port(), h.pid)), "{e}");
        assert!(e.contains("--api"), "{e}");
        drop(l);
        check_free("API", addr, "--api").unwrap();
    }
}

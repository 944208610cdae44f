//! Test hosts in network namespaces: each host its own namespace with one
//! address, all on one bridge in the test's namespace (which keeps an
//! address on the bridge to reach the hosts' APIs), and cuts made with
//! nftables inside the hosts. Everything is removed on drop, also when a
//! test fails. Needs root, `ip` (iproute2) and `nft` (nftables).

use std::process::Command;

/// One test host.
#[derive(Clone, Debug)]
pub struct Host {
    /// Its namespace.
    pub ns: String,
    /// Its address.
    pub ip: String,
}

impl Host {
    /// A command that runs `program` inside the host.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }
}

/// Hosts on one bridge.
pub struct Net {
    bridge: String,
    /// The hosts, in order.
    pub hosts: Vec<Host>,
    veths: Vec<String>,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Net {
    /// `n` hosts; `Err` says why they cannot be made here (not root, no
    /// iproute2 or nftables, no namespaces).
    pub fn new(n: usize) -> Result<Net, String> {
        // Names are short (interface names ≤ 15 bytes) and unique per
        // process, so parallel test binaries do not collide.
        // Two nets of one test binary (tests run in parallel threads) get
        // different names and subnets too.
        static NETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 8;
        let id = (std::process::id() % 10_000) * 10 + k;
        let subnet = format!("10.{}.{}", 213 + k, std::process::id() % 250);
        // Cuts and loss are nftables rules: without `nft` there is no test.
        if crate::which("nft").is_none() {
            return Err("nft not installed (apt-get install nftables)".into());
        }
        let mut net = Net { bridge: format!("tmb{id}"), hosts: Vec::new(), veths: Vec::new() };
        run(&["ip", "link", "add", &net.bridge, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{subnet}.1/24"), "dev", &net.bridge])?;
        run(&["ip", "link", "set", &net.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("tm{id}h{i}");
            let (outer, inner) = (format!("tmv{id}h{i}"), format!("tme{id}h{i}"));
            let ip = format!("{subnet}.{}", i + 2);
            run(&["ip", "netns", "add", &ns])?;
            net.hosts.push(Host { ns: ns.clone(), ip: ip.clone() });
            run(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
            net.veths.push(outer.clone());
            run(&["ip", "link", "set", &inner, "netns", &ns])?;
            run(&["ip", "link", "set", &outer, "master", &net.bridge, "up"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "addr", "add", &format!("{ip}/24"), "dev", &inner])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", &inner, "up"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Loads into host `h` an nftables table `table` with output (and,
    /// when `input`, input) drop rules for each host of `other`; `matcher`
    /// is what a packet must also match to be dropped ("" for all).
    fn drop_rules(&self, h: usize, other: &[usize], table: &str, input: bool, matcher: &str) {
        let ns = &self.hosts[h].ns;
        let mut rules = format!("table inet {table} {{\n chain out {{ type filter hook output priority 0; }}\n");
        if input {
            rules.push_str(" chain in { type filter hook input priority 0; }\n");
        }
        rules.push_str("}\n");
        for &o in other {
            let ip = &self.hosts[o].ip;
            rules.push_str(&format!("add rule inet {table} out ip daddr {ip} {matcher} drop\n"));
            if input {
                rules.push_str(&format!("add rule inet {table} in ip saddr {ip} {matcher} drop\n"));
            }
        }
        let file = std::env::temp_dir().join(format!("{ns}-{table}.nft"));
        std::fs::write(&file, rules).expect("rules file");
        run(&["ip", "netns", "exec", ns, "nft", "-f", file.to_str().unwrap()]).expect("nft rules");
    }

    /// Cuts hosts `a` off hosts `b`, both ways (packets dropped, as a lost
    /// uplink does: no reset, no answer).
    pub fn cut(&self, a: &[usize], b: &[usize]) {
        for (side, other) in [(a, b), (b, a)] {
            for &h in side {
                self.drop_rules(h, other, "tmcut", true, "");
            }
        }
    }

    /// Cuts one direction only: packets from hosts `from` to hosts `to`
    /// are dropped, the other way still flows (a broken uplink, a
    /// one-sided firewall rule).
    pub fn cut_one_way(&self, from: &[usize], to: &[usize]) {
        for &h in from {
            self.drop_rules(h, to, "tmcut", false, "");
        }
    }

    /// Drops `percent` % of the packets between hosts `a` and `b`, at
    /// random, both ways (lossy radio links, congested uplinks): on the
    /// way out only, so each packet is dropped once with that chance.
    pub fn lossy(&self, a: &[usize], b: &[usize], percent: u32) {
        for (side, other) in [(a, b), (b, a)] {
            for &h in side {
                self.drop_rules(h, other, "tmloss", false, &format!("numgen random mod 100 < {percent}"));
            }
        }
    }

    /// Removes every cut.
    pub fn heal(&self) {
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "exec", &h.ns, "nft", "delete", "table", "inet", "tmcut"]);
            let _ = run(&["ip", "netns", "exec", &h.ns, "nft", "delete", "table", "inet", "tmloss"]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        for v in &self.veths {
            let _ = run(&["ip", "link", "del", v]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}

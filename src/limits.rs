//! Per-client limits on expensive work: a client address may hold only so many
//! slots of one kind (uploads streaming, downloads started), and all clients
//! together only so many. A slot is released when its guard drops, whatever way
//! the work ends; the guard can move into a task that outlives the request (a
//! download goes on after its client leaves, and keeps counting against it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts slots in use per client address and in total.
pub struct ClientSlots {
    per_client: usize,
    total: usize,
    used: Mutex<Used>,
}

#[derive(Default)]
struct Used {
    by_client: HashMap<IpAddr, usize>,
    total: usize,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// This client holds its share.
    Client,
    /// Everyone together holds the total.
    Total,
}

/// Holds one slot; released on drop.
pub struct SlotGuard {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl ClientSlots {
    /// `per_client` slots per address, `total` in all.
    pub fn new(per_client: usize, total: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots {
            per_client,
            total,
            used: Mutex::new(Used::default()),
        })
    }

    /// Takes a slot for `ip`, or says which limit is reached.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<SlotGuard, Full> {
        let mut used = self.used.lock().map_err(|_| Full::Total)?;
        if used.total >= self.total {
            return Err(Full::Total);
        }
        let n = used.by_client.entry(ip).or_insert(0);
        if *n >= self.per_client {
            return Err(Full::Client);
        }
        *n += 1;
        used.total += 1;
        Ok(SlotGuard {
            slots: self.clone(),
            ip,
        })
    }

    /// Slots in use in total (a metric).
    pub fn in_use(&self) -> usize {
        self.used.lock().map(|u| u.total).unwrap_or(0)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Ok(mut used) = self.slots.used.lock() {
            used.total = used.total.saturating_sub(1);
            if let Some(n) = used.by_client.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    used.by_client.remove(&self.ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_address_bounded_in_total_and_released() {
        let s = ClientSlots::new(2, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let g1 = s.acquire(a).unwrap();
        let _g2 = s.acquire(a).unwrap();
        assert_eq!(s.acquire(a).err(), Some(Full::Client));
        let _g3 = s.acquire(b).unwrap();
        assert_eq!(s.acquire(c).err(), Some(Full::Total));
        drop(g1);
        assert!(s.acquire(a).is_ok());
        assert_eq!(s.in_use(), 3 - 1);
    }

    #[test]
    fn the_map_forgets_idle_clients() {
        let s = ClientSlots::new(1, 10);
        for i in 0..100u8 {
            drop(s.acquire(IpAddr::from([10, 0, 0, i])).unwrap());
        }
        assert!(s.used.lock().unwrap().by_client.is_empty());
    }
}

//! Per-client limits on expensive requests: a client address may stream only so
//! many uploads at once, so one host cannot tie up the disk and the sockets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Counts uploads in flight per client address.
pub struct UploadSlots {
    max: usize,
    used: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one slot; released on drop, whatever way the request ends.
pub struct SlotGuard<'a> {
    slots: &'a UploadSlots,
    ip: IpAddr,
}

impl UploadSlots {
    /// Allows `max` concurrent uploads per address.
    pub fn new(max: usize) -> UploadSlots {
        UploadSlots {
            max,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a slot for `ip`, or None when it already has `max` uploads going.
    pub fn acquire(&self, ip: IpAddr) -> Option<SlotGuard<'_>> {
        let mut used = self.used.lock().ok()?;
        let n = used.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SlotGuard { slots: self, ip })
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut used) = self.slots.used.lock() {
            if let Some(n) = used.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    used.remove(&self.ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_address_and_released() {
        let s = UploadSlots::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = s.acquire(a).unwrap();
        let _g2 = s.acquire(a).unwrap();
        assert!(s.acquire(a).is_none());
        assert!(s.acquire(b).is_some());
        drop(g1);
        assert!(s.acquire(a).is_some());
    }
}

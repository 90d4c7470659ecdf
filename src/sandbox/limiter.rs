//! The memory limit of one execution: all linear memories of the instance, summed.

/// Caps the sum of all linear memories of a store. wasmtime's `StoreLimits` caps each memory on
/// its own, which a component with several memories could use to exceed the total.
pub(crate) struct MemoryLimiter {
    limit: u64,
    used: u64,
    hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            used: 0,
            hit: false,
        }
    }

    /// Whether a growth was refused because of the limit.
    pub(crate) fn was_hit(&self) -> bool {
        self.hit
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        match self.used.checked_add(growth) {
            Some(total) if total <= self.limit => {
                self.used = total;
                Ok(true)
            }
            _ => {
                self.hit = true;
                Ok(false)
            }
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    #[test]
    fn sums_every_memory() {
        let mut limiter = MemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        assert!(!limiter.was_hit());
        assert!(!limiter.memory_growing(40, 41, None).unwrap());
        assert!(limiter.was_hit());
    }
}

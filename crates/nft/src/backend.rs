//! The kernel backend interface: apply a transaction atomically, read back our tables.

use crate::error::{ApplyError, ReadError};
use ruleset::{Ruleset, Transaction};

/// A way to program nftables in the calling thread's network namespace.
///
/// Both implementations ([`crate::Netlink`] and [`crate::NftCommand`]) apply a transaction all or
/// nothing, and read back the same [`Ruleset`], so the diff engine cannot tell them apart.
pub trait Backend: Send + Sync {
    /// A short name for logs and metrics (`netlink`, `nft`).
    fn name(&self) -> &'static str;

    /// Applies `txn` in one kernel transaction: every operation or none.
    fn apply(&self, txn: &Transaction) -> Result<(), ApplyError>;

    /// Reads the tables called `table` (in the `ip` and `ip6` families, those that exist) with
    /// their chains, rules, sets, maps and elements. Tables of other names are not read.
    fn read(&self, table: &str) -> Result<Ruleset, ReadError>;

    /// [`Backend::read`], where every set the kernel holds with exactly the elements of the
    /// same set in `like` shares them instead of holding a copy
    /// ([`ruleset::Set::share_elements`]): planning against the kernel then costs the
    /// differences, not a second ruleset. This default reads first and shares after; the
    /// backends share each set as it is read.
    fn read_like(&self, table: &str, like: &Ruleset) -> Result<Ruleset, ReadError> {
        let mut read = self.read(table)?;
        read.share_elements(like);
        Ok(read)
    }
}

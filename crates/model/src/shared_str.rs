//! [`SharedStr`]: one string shared by many holders behind one pointer.

use std::sync::Arc;

/// A string shared by many holders: the node name of every endpoint on a node, the comment of
/// every set element of a service-port. One pointer (an `Arc<str>` is a pointer and a length),
/// as a node holds 100 000s of them at 10 000 Services; cloning it allocates nothing.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SharedStr(Arc<Box<str>>);

impl SharedStr {
    /// Whether both are the same shared copy (not only equal).
    pub fn ptr_eq(a: &SharedStr, b: &SharedStr) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// How many holders share this copy.
    pub(crate) fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl std::ops::Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SharedStr {
    fn from(text: &str) -> SharedStr {
        SharedStr(Arc::new(text.into()))
    }
}

impl From<String> for SharedStr {
    fn from(text: String) -> SharedStr {
        SharedStr(Arc::new(text.into_boxed_str()))
    }
}

impl std::fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self.0, f)
    }
}

impl std::fmt::Display for SharedStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_copy_and_compare_as_text() {
        let a = SharedStr::from("node-a");
        let b = a.clone();
        assert!(SharedStr::ptr_eq(&a, &b));
        assert_eq!(a.holders(), 2);
        let c = SharedStr::from(String::from("node-a"));
        assert!(!SharedStr::ptr_eq(&a, &c));
        assert_eq!(a, c);
        assert_eq!(&*a, "node-a");
        assert_eq!(format!("{a} {a:?}"), "node-a \"node-a\"");
        assert_eq!(std::mem::size_of::<SharedStr>(), 8);
    }
}

//! One integration-test binary; topic modules below.

mod client;
mod smoke {
    #[test]
    fn builds() {}
}

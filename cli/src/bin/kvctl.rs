//! `kvctl`
fn main() {}

//! One integration-test binary (compiles once). Every test talks to a real
//! server over real sockets.

mod support;

mod ddp;

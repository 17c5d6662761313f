//! A consumer group's committed offsets, read by a client that is not a
//! member of the group: librdkafka's `ListConsumerGroupOffsets` admin call
//! (librdkafka 2.0 and later), which rust-rdkafka 0.39 does not wrap.
//!
//! This lets one client observe the groups of many pipelines; the only other
//! way, `Consumer::committed_offsets`, reads the client's own `group.id`, so
//! it needs a client per group.
#![allow(unsafe_code)] // The one FFI call the workspace makes; see the SAFETY notes.

use std::ffi::{CStr, CString, c_char, c_int};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;

/// How much longer than the request timeout the answer is awaited: librdkafka
/// answers every admin request, with an error event at the latest when its
/// request timeout passes, so this only guards against a lost event.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// `group`'s committed offset for each partition of `topic` that has one.
/// Partitions without a committed offset are left out.
pub fn committed_offsets<C: ClientContext>(
    client: &Client<C>,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<Vec<(i32, i64)>> {
    let group = CString::new(group)
        .map_err(|_| KafkaError::AdminOpCreation("a group name holds a NUL byte".into()))?;
    let rk = client.native_ptr();
    let request_ms = millis(timeout);
    let answer_ms = millis(timeout + ANSWER_GRACE);
    // SAFETY: `rk` is a live handle for as long as `client` is borrowed. Each
    // object created here is owned by one `Owned`, destroyed once, after every
    // pointer into it is gone: the request and options are copied by the call,
    // and what the result points into belongs to the event, which is dropped
    // after `read_offsets` has copied the offsets out.
    unsafe {
        let queue = Owned::new(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy)?;
        let options = Owned::new(
            rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
            ),
            rd::rd_kafka_AdminOptions_destroy,
        )?;
        let mut errstr = [0 as c_char; 256];
        let set = rd::rd_kafka_AdminOptions_set_request_timeout(
            options.0,
            request_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        if set != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let why = CStr::from_ptr(errstr.as_ptr()).to_string_lossy();
            return Err(KafkaError::AdminOpCreation(why.into_owned()));
        }
        // No partitions named: the group's every committed offset.
        let request = Owned::new(
            rd::rd_kafka_ListConsumerGroupOffsets_new(group.as_ptr(), std::ptr::null()),
            rd::rd_kafka_ListConsumerGroupOffsets_destroy,
        )?;
        let mut requests = [request.0];
        rd::rd_kafka_ListConsumerGroupOffsets(rk, requests.as_mut_ptr(), 1, options.0, queue.0);
        let event = Owned::new(
            rd::rd_kafka_queue_poll(queue.0, answer_ms),
            rd::rd_kafka_event_destroy,
        )
        .map_err(|_| KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut))?;
        read_offsets(event.0, topic)
    }
}

/// Copies `topic`'s offsets out of a `ListConsumerGroupOffsets` result event.
///
/// # Safety
/// `event` is a live event returned for a `ListConsumerGroupOffsets` request.
unsafe fn read_offsets(
    event: *mut rd::rd_kafka_event_t,
    topic: &str,
) -> KafkaResult<Vec<(i32, i64)>> {
    // SAFETY: every pointer read here is owned by `event`, live per the
    // caller's contract; counts come from librdkafka with their arrays.
    unsafe {
        let code = rd::rd_kafka_event_error(event);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(KafkaError::AdminOp(code.into()));
        }
        let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event);
        if result.is_null() {
            return Err(KafkaError::AdminOp(RDKafkaErrorCode::Fail));
        }
        let mut count = 0usize;
        let groups = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count);
        let mut out = Vec::new();
        for &group in slice(groups, count) {
            let error = rd::rd_kafka_group_result_error(group);
            if !error.is_null() {
                return Err(KafkaError::AdminOp(rd::rd_kafka_error_code(error).into()));
            }
            let list = rd::rd_kafka_group_result_partitions(group);
            if list.is_null() {
                continue;
            }
            let cnt = usize::try_from((*list).cnt).unwrap_or(0);
            for p in slice((*list).elems.cast_const(), cnt) {
                let ok = p.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
                if ok && p.offset >= 0 && CStr::from_ptr(p.topic).to_bytes() == topic.as_bytes() {
                    out.push((p.partition, p.offset));
                }
            }
        }
        Ok(out)
    }
}

/// The `count` elements at `ptr`, or none for a null pointer.
///
/// # Safety
/// A non-null `ptr` points to `count` initialised elements that outlive `'a`.
unsafe fn slice<'a, T>(ptr: *const T, count: usize) -> &'a [T] {
    if ptr.is_null() || count == 0 {
        return &[];
    }
    // SAFETY: per the function's contract.
    unsafe { std::slice::from_raw_parts(ptr, count) }
}

fn millis(d: Duration) -> c_int {
    c_int::try_from(d.as_millis()).unwrap_or(c_int::MAX)
}

/// A librdkafka object and its destructor, called once on drop.
struct Owned<T>(*mut T, unsafe extern "C" fn(*mut T));

impl<T> Owned<T> {
    fn new(ptr: *mut T, destroy: unsafe extern "C" fn(*mut T)) -> KafkaResult<Self> {
        if ptr.is_null() {
            return Err(KafkaError::AdminOpCreation(
                "librdkafka returned no object".into(),
            ));
        }
        Ok(Self(ptr, destroy))
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer is non-null, owned, and destroyed only here.
        unsafe { (self.1)(self.0) }
    }
}

//! The two macros every request adapter uses: run a request's work on the mount's runtime
//! and answer the kernel, and convert a name from the kernel or answer its errno.

/// Runs `$body` (an async block yielding `Result<T, Errno>`) on the runtime and answers
/// with `$ok` or the errno.
macro_rules! spawn {
    ($self:ident, $reply:ident, |$core:ident| $body:expr, |$v:ident| $ok:expr) => {{
        let $core = $self.core.clone();
        $self.rt.spawn(async move {
            let result = {
                let $core = $core.clone();
                $body
            }
            .await;
            match result {
                Ok($v) => $ok,
                Err(e) => $reply.error(e),
            }
        });
    }};
}

/// Converts a name, or answers the errno and returns.
macro_rules! name {
    ($name:expr, $reply:ident) => {
        match $crate::namespace::name_str($name) {
            Ok(n) => n.to_string(),
            Err(e) => return $reply.error(fuser::Errno::from_i32(e)),
        }
    };
}

//! The data of socket.io packets: any text is checked without panicking;
//! an event's name and arguments, once split, rebuild JSON that the
//! checks accept again with the same split.

#![no_main]

use ao_socketio::socket::packet::{ack_args, connect_payload, split_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = connect_payload(text);
    if let Ok(args) = ack_args(text) {
        assert_eq!(ack_args(&format!("[{args}]")), Ok(args));
    }
    if let Ok((name, args)) = split_event(text) {
        let name_json = serde_json::to_string(&name).expect("a string encodes");
        let rebuilt = if args.is_empty() {
            format!("[{name_json}]")
        } else {
            format!("[{name_json},{args}]")
        };
        let (again, again_args) = split_event(&rebuilt).expect("rebuilt event checks");
        assert_eq!((again.as_ref(), again_args), (name.as_ref(), args));
    }
});

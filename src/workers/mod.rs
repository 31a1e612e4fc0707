//! Background workers. Each runs beside the server, stops on shutdown, logs and
//! counts what it does, and keeps going after an error.

pub mod uploads;

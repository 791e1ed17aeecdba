//! The OMERO connector: events and the directory read from OMERO's own database, logs and ports.

pub mod blitz;
pub mod cursor;
pub mod directory;
pub mod eventlog;
pub mod logfile;
pub mod mapping;
pub mod probe;
pub mod tail;
pub mod weblog;

//! In-process and process-level Cairn test clusters

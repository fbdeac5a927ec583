//! Server-side apply and managedFields (being written).

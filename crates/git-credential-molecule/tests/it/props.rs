//! Property tests of the credential protocol as `get` sees it (filled in by the property-test work).

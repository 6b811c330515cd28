//! HTTP origin for abr packages. Not implemented yet: tracked by issue 4.

//! The `/hlm/v1` side: SwiftHLM API, the persistent request queue, the dispatcher and the recall
//! scheduler that every recall goes through.

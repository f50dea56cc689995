package eventsql

import (
	_ "embed" // the statements are embedded .sql files
)

// The stream lifecycle's statements (see [eventstore.Lifecycle]), as
// their lifecycle_*.sql files in this folder say.
var (
	//go:embed lifecycle_lock.sql
	LifecycleLockSQL string
	//go:embed lifecycle_state.sql
	LifecycleStateSQL string
	//go:embed lifecycle_set.sql
	LifecycleSetSQL string
	//go:embed lifecycle_archive.sql
	LifecycleArchiveSQL string
	//go:embed lifecycle_restore.sql
	LifecycleRestoreSQL string
	//go:embed lifecycle_truncate.sql
	LifecycleTruncateSQL string
	//go:embed lifecycle_purge.sql
	LifecyclePurgeSQL string
	//go:embed lifecycle_read_archived_forward.sql
	LifecycleReadArchivedForwardSQL string
	//go:embed lifecycle_read_archived_backward.sql
	LifecycleReadArchivedBackwardSQL string
)

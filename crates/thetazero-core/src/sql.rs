//! How the stores bind and read ids and permission request statuses in their
//! queries: ids as `BIGINT`/`INTEGER`, statuses as their lowercase text. Each
//! backend's half is behind its feature (`sqlite`, `postgres`), which only
//! that store turns on; nothing here opens a connection.

#[cfg(feature = "sqlite")]
mod sqlite {
    use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

    use crate::id::{AccountId, AgentId, AuditRecordId, ExecutionId, KeyId, PermissionRequestId};
    use crate::model::PermissionRequestStatus;

    macro_rules! sqlite_ids {
        ($($name:ident),*) => {$(
            impl ToSql for $name {
                fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                    Ok(ToSqlOutput::from(self.get()))
                }
            }

            impl FromSql for $name {
                fn column_result(value: ValueRef<'_>) -> FromSqlResult<$name> {
                    i64::column_result(value).map($name::new)
                }
            }
        )*};
    }

    sqlite_ids!(
        AccountId,
        AgentId,
        AuditRecordId,
        ExecutionId,
        KeyId,
        PermissionRequestId
    );

    impl ToSql for PermissionRequestStatus {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.as_str()))
        }
    }

    /// Text that names no status is an error, not a default.
    impl FromSql for PermissionRequestStatus {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<PermissionRequestStatus> {
            value
                .as_str()?
                .parse()
                .map_err(|e| FromSqlError::Other(Box::new(e)))
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::error::Error;

    use bytes::BytesMut;
    use postgres_types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};

    use crate::id::{AccountId, AgentId, AuditRecordId, ExecutionId, KeyId, PermissionRequestId};
    use crate::model::PermissionRequestStatus;

    type BoxError = Box<dyn Error + Sync + Send>;

    macro_rules! postgres_ids {
        ($($name:ident),*) => {$(
            impl ToSql for $name {
                fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
                    self.get().to_sql(ty, out)
                }

                accepts!(INT8);
                to_sql_checked!();
            }

            impl<'a> FromSql<'a> for $name {
                fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<$name, BoxError> {
                    i64::from_sql(ty, raw).map($name::new)
                }

                accepts!(INT8);
            }
        )*};
    }

    postgres_ids!(
        AccountId,
        AgentId,
        AuditRecordId,
        ExecutionId,
        KeyId,
        PermissionRequestId
    );

    impl ToSql for PermissionRequestStatus {
        fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
            self.as_str().to_sql(ty, out)
        }

        fn accepts(ty: &Type) -> bool {
            <&str as ToSql>::accepts(ty)
        }

        to_sql_checked!();
    }

    /// Text that names no status is an error, not a default.
    impl<'a> FromSql<'a> for PermissionRequestStatus {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<PermissionRequestStatus, BoxError> {
            Ok(<&str as FromSql>::from_sql(ty, raw)?.parse()?)
        }

        fn accepts(ty: &Type) -> bool {
            <&str as FromSql>::accepts(ty)
        }
    }
}

//! The `cairn.v1.FileSystem` gRPC service: thin adapters over the POSIX operations in
//! `posix.rs`. No logic lives here beyond decoding requests.

use std::sync::Arc;

use cairn_meta::XattrMode;
use cairn_proto::pb;
use cairn_proto::pb::file_system_server::{FileSystem, FileSystemServer};
use tonic::{Request, Response, Status};

use crate::master::{Master, request_id};
use crate::posix::{Owner, SetAttrArgs, special_from_pb};

/// gRPC face of the master's POSIX view.
#[derive(Clone)]
pub struct FsService {
    pub master: Arc<Master>,
}

impl FsService {
    /// The tonic service, with the message limits every Cairn service uses.
    pub fn server(master: Arc<Master>) -> FileSystemServer<FsService> {
        FileSystemServer::new(FsService { master })
            .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
    }
}

fn node(n: pb::Node) -> Response<pb::NodeResponse> {
    Response::new(pb::NodeResponse {
        node: Some(n),
        first_write: None,
    })
}

#[tonic::async_trait]
impl FileSystem for FsService {
    async fn lookup_at(
        &self,
        req: Request<pb::LookupAtRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        let r = req.into_inner();
        Ok(node(self.master.fs_lookup_at(r.parent, &r.name)?))
    }

    async fn get_attr(
        &self,
        req: Request<pb::GetAttrRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        Ok(node(self.master.fs_get_attr(req.into_inner().inode)?))
    }

    async fn set_attr(
        &self,
        req: Request<pb::SetAttrRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        let r = req.into_inner();
        let args = SetAttrArgs {
            inode: r.inode,
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            size: r.size,
            atime_ns: r.atime_ns,
            mtime_ns: r.mtime_ns,
            atime_now: r.atime_now,
            mtime_now: r.mtime_now,
            session_id: r.session_id,
        };
        Ok(node(
            self.master.fs_set_attr(request_id(r.req), args).await?,
        ))
    }

    async fn mkdir_at(
        &self,
        req: Request<pb::MkdirAtRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        let r = req.into_inner();
        let o = Owner {
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
        };
        let n = self
            .master
            .fs_mkdir_at(request_id(r.req), r.parent, r.name, o)
            .await?;
        Ok(node(n))
    }

    async fn create_at(
        &self,
        req: Request<pb::CreateAtRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        let r = req.into_inner();
        let o = Owner {
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
        };
        let (n, first_write) = self
            .master
            .fs_create_at(
                request_id(r.req),
                r.parent,
                r.name,
                o,
                r.exclusive,
                r.prepare_write,
            )
            .await?;
        Ok(Response::new(pb::NodeResponse {
            node: Some(n),
            first_write,
        }))
    }

    async fn mknod_at(
        &self,
        req: Request<pb::MknodAtRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        let r = req.into_inner();
        let Some(kind) = special_from_pb(r.kind) else {
            return Err(cairn_proto::ErrorKind::InvalidArgument
                .status("mknod needs a FIFO, socket or device kind"));
        };
        let o = Owner {
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
        };
        let n = self
            .master
            .fs_mknod_at(request_id(r.req), r.parent, r.name, kind, r.rdev, o)
            .await?;
        Ok(node(n))
    }

    async fn symlink_at(
        &self,
        req: Request<pb::SymlinkAtRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        let r = req.into_inner();
        let o = Owner {
            mode: 0o777,
            uid: r.uid,
            gid: r.gid,
        };
        let n = self
            .master
            .fs_symlink_at(request_id(r.req), r.parent, r.name, r.target, o)
            .await?;
        Ok(node(n))
    }

    async fn link_at(
        &self,
        req: Request<pb::LinkAtRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        let r = req.into_inner();
        let n = self
            .master
            .fs_link_at(request_id(r.req), r.inode, r.new_parent, r.new_name)
            .await?;
        Ok(node(n))
    }

    async fn unlink_at(
        &self,
        req: Request<pb::UnlinkAtRequest>,
    ) -> Result<Response<pb::UnlinkAtResponse>, Status> {
        let r = req.into_inner();
        let parent = self
            .master
            .fs_unlink_at(request_id(r.req), r.parent, r.name, r.session_id)
            .await?;
        Ok(Response::new(pb::UnlinkAtResponse { parent }))
    }

    async fn rmdir_at(
        &self,
        req: Request<pb::RmdirAtRequest>,
    ) -> Result<Response<pb::RmdirAtResponse>, Status> {
        let r = req.into_inner();
        let parent = self
            .master
            .fs_rmdir_at(request_id(r.req), r.parent, r.name)
            .await?;
        Ok(Response::new(pb::RmdirAtResponse { parent }))
    }

    async fn rename_at(
        &self,
        req: Request<pb::RenameAtRequest>,
    ) -> Result<Response<pb::RenameAtResponse>, Status> {
        let mut r = req.into_inner();
        let id = request_id(r.req.take());
        Ok(Response::new(self.master.fs_rename_at(id, r).await?))
    }

    async fn read_dir(
        &self,
        req: Request<pb::ReadDirRequest>,
    ) -> Result<Response<pb::ReadDirResponse>, Status> {
        Ok(Response::new(self.master.fs_read_dir(&req.into_inner())?))
    }

    async fn read_link(
        &self,
        req: Request<pb::ReadLinkRequest>,
    ) -> Result<Response<pb::ReadLinkResponse>, Status> {
        let target = self.master.fs_read_link(req.into_inner().inode)?;
        Ok(Response::new(pb::ReadLinkResponse { target }))
    }

    async fn get_xattr(
        &self,
        req: Request<pb::GetXattrRequest>,
    ) -> Result<Response<pb::GetXattrResponse>, Status> {
        let r = req.into_inner();
        let v = self.master.fs_get_xattr(r.inode, &r.name)?;
        Ok(Response::new(pb::GetXattrResponse {
            found: v.is_some(),
            value: v.unwrap_or_default().into(),
        }))
    }

    async fn set_xattr(
        &self,
        req: Request<pb::SetXattrRequest>,
    ) -> Result<Response<pb::SetXattrResponse>, Status> {
        let r = req.into_inner();
        let mode = match pb::XattrFlag::try_from(r.flag) {
            Ok(pb::XattrFlag::Create) => XattrMode::CreateOnly,
            Ok(pb::XattrFlag::Replace) => XattrMode::ReplaceOnly,
            _ => XattrMode::Any,
        };
        let found = self
            .master
            .fs_set_xattr(request_id(r.req), r.inode, r.name, r.value.to_vec(), mode)
            .await?;
        Ok(Response::new(pb::SetXattrResponse { found }))
    }

    async fn list_xattr(
        &self,
        req: Request<pb::ListXattrRequest>,
    ) -> Result<Response<pb::ListXattrResponse>, Status> {
        let names = self.master.fs_list_xattr(req.into_inner().inode)?;
        Ok(Response::new(pb::ListXattrResponse { names }))
    }

    async fn remove_xattr(
        &self,
        req: Request<pb::RemoveXattrRequest>,
    ) -> Result<Response<pb::RemoveXattrResponse>, Status> {
        let r = req.into_inner();
        let found = self
            .master
            .fs_remove_xattr(request_id(r.req), r.inode, r.name)
            .await?;
        Ok(Response::new(pb::RemoveXattrResponse { found }))
    }

    async fn stat_fs(
        &self,
        _req: Request<pb::StatFsRequest>,
    ) -> Result<Response<pb::StatFsResponse>, Status> {
        Ok(Response::new(self.master.fs_stat_fs()))
    }
}

//! The `cairn.v1.Master` gRPC service: thin adapters that validate a request, call a
//! `Master` method, and convert the answer. No logic lives here.

use std::pin::Pin;
use std::sync::Arc;

use cairn_proto::pb;
use cairn_proto::pb::master_server::Master as MasterRpc;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use crate::error::MasterError;
use crate::master::{CreateArgs, Master, attr_to_pb, parse_path, request_id};

/// gRPC face of the master.
#[derive(Clone)]
pub struct MasterService {
    pub master: Arc<Master>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn attr(a: &cairn_meta::Attr) -> Option<pb::Attr> {
    Some(attr_to_pb(a))
}

#[tonic::async_trait]
impl MasterRpc for MasterService {
    async fn mkdir(
        &self,
        req: Request<pb::MkdirRequest>,
    ) -> Result<Response<pb::MkdirResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(&r.path);
        let a = self
            .master
            .mkdir(request_id(r.req), parse_path(&r.path)?, r.parents, r.mode)
            .await?;
        Ok(Response::new(pb::MkdirResponse { attr: attr(&a) }))
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(&r.path);
        let args = CreateArgs {
            path: parse_path(&r.path)?,
            overwrite: r.overwrite,
            mode: r.mode,
            goal: r.goal,
            session_id: r.session_id,
            prepare_write: r.prepare_write,
        };
        let (a, first_write) = self.master.create(request_id(r.req), args).await?;
        Ok(Response::new(pb::CreateResponse {
            attr: attr(&a),
            first_write,
        }))
    }

    async fn stat(
        &self,
        req: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let a = self.master.stat(&parse_path(&req.into_inner().path)?)?;
        Ok(Response::new(pb::StatResponse { attr: attr(&a) }))
    }

    async fn stat_many(
        &self,
        req: Request<pb::StatManyRequest>,
    ) -> Result<Response<pb::StatManyResponse>, Status> {
        let paths = req.into_inner().paths;
        if paths.len() > cairn_proto::MAX_STAT_MANY {
            return Err(Status::from(MasterError::InvalidArgument(format!(
                "{} paths in one StatMany; at most {}",
                paths.len(),
                cairn_proto::MAX_STAT_MANY
            ))));
        }
        let results = self
            .master
            .stat_many(&paths)
            .into_iter()
            .map(|r| match r {
                Ok(a) => pb::StatResult {
                    attr: attr(&a),
                    ..Default::default()
                },
                Err(e) => pb::StatResult {
                    attr: None,
                    error: e.kind().wire_name().to_string(),
                    message: e.to_string(),
                },
            })
            .collect();
        Ok(Response::new(pb::StatManyResponse { results }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(&r.path);
        let (entries, truncated) =
            self.master
                .list(&parse_path(&r.path)?, &r.start_after, r.limit)?;
        let entries = entries
            .into_iter()
            .map(|(name, a)| pb::DirEntry {
                name,
                attr: attr(&a),
            })
            .collect();
        Ok(Response::new(pb::ListResponse { entries, truncated }))
    }

    async fn rename(
        &self,
        req: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(format_args!("{} -> {}", r.from, r.to));
        let (from, to) = (parse_path(&r.from)?, parse_path(&r.to)?);
        self.master
            .rename(request_id(r.req), from, to, r.no_replace, r.session_id)
            .await?;
        Ok(Response::new(pb::RenameResponse {}))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(&r.path);
        self.master
            .delete(
                request_id(r.req),
                parse_path(&r.path)?,
                r.recursive,
                r.session_id,
            )
            .await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }

    async fn get_chunks(
        &self,
        req: Request<pb::GetChunksRequest>,
    ) -> Result<Response<pb::GetChunksResponse>, Status> {
        Ok(Response::new(self.master.get_chunks(&req.into_inner())?))
    }

    async fn prepare_write(
        &self,
        req: Request<pb::PrepareWriteRequest>,
    ) -> Result<Response<pb::PrepareWriteResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(format_args!(
            "inode {} chunk {}",
            r.inode, r.chunk_index
        ));
        Ok(Response::new(
            self.master
                .prepare_write(r.inode, r.chunk_index, r.session_id)
                .await?,
        ))
    }

    async fn commit_write(
        &self,
        req: Request<pb::CommitWriteRequest>,
    ) -> Result<Response<pb::CommitWriteResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(format_args!("inode {} end {}", r.inode, r.end));
        let new_chunks = r.new_chunks.iter().map(|c| (c.index, c.chunk_id)).collect();
        let a = self
            .master
            .commit_write(request_id(r.req), r.inode, r.end, r.session_id, new_chunks)
            .await?;
        Ok(Response::new(pb::CommitWriteResponse { attr: attr(&a) }))
    }

    async fn report_failure(
        &self,
        req: Request<pb::ReportFailureRequest>,
    ) -> Result<Response<pb::ReportFailureResponse>, Status> {
        self.master.report_failure(&req.into_inner());
        Ok(Response::new(pb::ReportFailureResponse {}))
    }

    async fn truncate(
        &self,
        req: Request<pb::TruncateRequest>,
    ) -> Result<Response<pb::TruncateResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(format_args!("inode {} size {}", r.inode, r.size));
        let a = self
            .master
            .truncate(request_id(r.req), r.inode, r.size, r.session_id)
            .await?;
        Ok(Response::new(pb::TruncateResponse { attr: attr(&a) }))
    }

    async fn reserve_append(
        &self,
        req: Request<pb::ReserveAppendRequest>,
    ) -> Result<Response<pb::ReserveAppendResponse>, Status> {
        let r = req.into_inner();
        cairn_common::telemetry::record_subject(format_args!("inode {} +{}", r.inode, r.length));
        let offset = self
            .master
            .reserve_append(request_id(r.req), r.inode, r.length, r.session_id)
            .await?;
        Ok(Response::new(pb::ReserveAppendResponse { offset }))
    }

    async fn open_session(
        &self,
        req: Request<pb::OpenSessionRequest>,
    ) -> Result<Response<pb::OpenSessionResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(
            self.master.open_session(request_id(r.req), r.owner).await?,
        ))
    }

    async fn keep_alive(
        &self,
        req: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        self.master.keep_alive(req.into_inner().session_id)?;
        Ok(Response::new(pb::KeepAliveResponse {}))
    }

    async fn close_session(
        &self,
        req: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        self.master
            .close_session(req.into_inner().session_id)
            .await?;
        Ok(Response::new(pb::CloseSessionResponse {}))
    }

    type LockStream = BoxStream<pb::LockEvent>;

    async fn lock(
        &self,
        req: Request<pb::LockRequest>,
    ) -> Result<Response<Self::LockStream>, Status> {
        let rx: mpsc::Receiver<_> = self.master.lock(req.into_inner()).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn unlock(
        &self,
        req: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        self.master.unlock_request(req.into_inner()).await?;
        Ok(Response::new(pb::UnlockResponse {}))
    }

    async fn test_lock(
        &self,
        req: Request<pb::TestLockRequest>,
    ) -> Result<Response<pb::TestLockResponse>, Status> {
        Ok(Response::new(self.master.test_lock(&req.into_inner())?))
    }

    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(self.master.status()))
    }

    type HeartbeatStream = BoxStream<pb::HeartbeatResponse>;

    async fn heartbeat(
        &self,
        req: Request<Streaming<pb::HeartbeatRequest>>,
    ) -> Result<Response<Self::HeartbeatStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(self.master.clone().serve_heartbeats(req.into_inner(), tx));
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}

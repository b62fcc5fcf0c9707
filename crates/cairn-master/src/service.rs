//! The `cairn.v1.Master` gRPC service: thin adapters that validate a request, call a
//! `Master` method, and convert the answer. No logic lives here.

use std::pin::Pin;
use std::sync::Arc;

use cairn_proto::pb;
use cairn_proto::pb::master_server::Master as MasterRpc;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::master::{Master, attr_to_pb, parse_path, request_id};

/// gRPC face of the master.
#[derive(Clone)]
pub struct MasterService {
    pub master: Arc<Master>,
}

type HeartbeatStream = Pin<Box<dyn Stream<Item = Result<pb::HeartbeatResponse, Status>> + Send>>;

#[tonic::async_trait]
impl MasterRpc for MasterService {
    async fn mkdir(
        &self,
        req: Request<pb::MkdirRequest>,
    ) -> Result<Response<pb::MkdirResponse>, Status> {
        let r = req.into_inner();
        let attr = self
            .master
            .mkdir(request_id(r.req), parse_path(&r.path)?, r.parents, r.mode)
            .await?;
        Ok(Response::new(pb::MkdirResponse {
            attr: Some(attr_to_pb(&attr)),
        }))
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let r = req.into_inner();
        let attr = self
            .master
            .create(
                request_id(r.req),
                parse_path(&r.path)?,
                r.overwrite,
                r.mode,
                r.goal,
            )
            .await?;
        Ok(Response::new(pb::CreateResponse {
            attr: Some(attr_to_pb(&attr)),
        }))
    }

    async fn stat(
        &self,
        req: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let attr = self.master.stat(&parse_path(&req.into_inner().path)?)?;
        Ok(Response::new(pb::StatResponse {
            attr: Some(attr_to_pb(&attr)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let r = req.into_inner();
        let (entries, truncated) =
            self.master
                .list(&parse_path(&r.path)?, &r.start_after, r.limit)?;
        let entries = entries
            .into_iter()
            .map(|(name, a)| pb::DirEntry {
                name,
                attr: Some(attr_to_pb(&a)),
            })
            .collect();
        Ok(Response::new(pb::ListResponse { entries, truncated }))
    }

    async fn rename(
        &self,
        req: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        let r = req.into_inner();
        self.master
            .rename(
                request_id(r.req),
                parse_path(&r.from)?,
                parse_path(&r.to)?,
                r.no_replace,
            )
            .await?;
        Ok(Response::new(pb::RenameResponse {}))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        self.master
            .delete(request_id(r.req), parse_path(&r.path)?, r.recursive)
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
        Ok(Response::new(
            self.master.prepare_write(r.inode, r.chunk_index).await?,
        ))
    }

    async fn commit_write(
        &self,
        req: Request<pb::CommitWriteRequest>,
    ) -> Result<Response<pb::CommitWriteResponse>, Status> {
        let r = req.into_inner();
        let attr = self
            .master
            .commit_write(request_id(r.req), r.inode, r.end)
            .await?;
        Ok(Response::new(pb::CommitWriteResponse {
            attr: Some(attr_to_pb(&attr)),
        }))
    }

    async fn report_failure(
        &self,
        req: Request<pb::ReportFailureRequest>,
    ) -> Result<Response<pb::ReportFailureResponse>, Status> {
        self.master.report_failure(&req.into_inner());
        Ok(Response::new(pb::ReportFailureResponse {}))
    }

    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(self.master.status()))
    }

    type HeartbeatStream = HeartbeatStream;

    async fn heartbeat(
        &self,
        req: Request<Streaming<pb::HeartbeatRequest>>,
    ) -> Result<Response<Self::HeartbeatStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(self.master.clone().serve_heartbeats(req.into_inner(), tx));
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}
